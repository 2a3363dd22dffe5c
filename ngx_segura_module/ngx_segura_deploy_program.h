
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The fixed commands of POST /api/keys/{id}/deploy and /withdraw
 * (ngx_segura_api_keys_deploy.c), as C string constants: no other file
 * may build a command for a device.  Plain C, no nginx headers, so that
 * t/deploy_program.t can print them and run them under several shells.
 */


#ifndef _NGX_SEGURA_DEPLOY_PROGRAM_H_INCLUDED_
#define _NGX_SEGURA_DEPLOY_PROGRAM_H_INCLUDED_


/*
 * The programs run on the device, by the user's login shell as
 * "exec /bin/sh -c '<program>'" (so that any login shell can start it:
 * one line, no single quote in it).  The public line comes on stdin; the
 * answer is one word on stdout (deployed, withdrawn, unchanged) and exit
 * status 0, or "segura: <why>" on stderr and exit status 1.
 *
 * umask 077: ~/.ssh is made 0700 and a new file 0600 (mktemp); an
 * existing file's mode is kept (cp -p onto the temporary file, which is
 * then written in place); the temporary file is in ~/.ssh, so the rename
 * is atomic; other lines and comments are kept byte for byte (a last
 * line without a newline gets one before ours).
 */

#define NGX_SEGURA_DEPLOY_PRELUDE                                            \
    "umask 077; t=; "                                                        \
    "die() { [ -z \"$t\" ] || rm -f \"$t\"; echo \"segura: $*\" >&2; "       \
    "exit 1; }; "                                                            \
    "[ -n \"$HOME\" ] && cd \"$HOME\" || die no home directory; "            \
    "IFS= read -r k || die no key line on stdin; "                           \
    "case \"$k\" in ssh-*|ecdsa-*|sk-*) ;; *) die not a key line;; esac; "   \
    "f=.ssh/authorized_keys; "

#define NGX_SEGURA_DEPLOY_ADD                                                \
    NGX_SEGURA_DEPLOY_PRELUDE                                                \
    "[ -d .ssh ] || mkdir -m 700 .ssh || die cannot create ~/.ssh; "         \
    "if [ -f $f ] && grep -qxF -e \"$k\" $f; then echo unchanged; exit 0; "  \
    "fi; "                                                                   \
    "t=$(mktemp .ssh/.authorized_keys.XXXXXX) "                              \
    "|| die cannot create a file in ~/.ssh; "                                \
    "if [ -f $f ]; then cp -p $f \"$t\" || die cannot copy $f; "             \
    "if [ -s \"$t\" ] && [ -n \"$(tail -c 1 \"$t\")\" ]; then "              \
    "echo >> \"$t\" || die cannot write; fi; fi; "                           \
    "printf \"%s\\n\" \"$k\" >> \"$t\" || die cannot write; "                \
    "mv -f \"$t\" $f || die cannot rename over $f; echo deployed"

#define NGX_SEGURA_DEPLOY_REMOVE                                             \
    NGX_SEGURA_DEPLOY_PRELUDE                                                \
    "[ -f $f ] || { echo unchanged; exit 0; }; "                             \
    "grep -qxF -e \"$k\" $f; r=$?; "                                         \
    "[ $r -eq 1 ] && { echo unchanged; exit 0; }; "                          \
    "[ $r -eq 0 ] || die cannot read $f; "                                   \
    "t=$(mktemp .ssh/.authorized_keys.XXXXXX) "                              \
    "|| die cannot create a file in ~/.ssh; "                                \
    "cp -p $f \"$t\" || die cannot copy $f; "                                \
    "grep -vxF -e \"$k\" $f > \"$t\"; [ $? -le 1 ] || die cannot write; "    \
    "mv -f \"$t\" $f || die cannot rename over $f; echo withdrawn"

#define NGX_SEGURA_DEPLOY_COMMAND(program)  "exec /bin/sh -c '" program "'"

#define NGX_SEGURA_DEPLOY_ADD_COMMAND                                        \
    NGX_SEGURA_DEPLOY_COMMAND(NGX_SEGURA_DEPLOY_ADD)

#define NGX_SEGURA_DEPLOY_REMOVE_COMMAND                                     \
    NGX_SEGURA_DEPLOY_COMMAND(NGX_SEGURA_DEPLOY_REMOVE)


#endif /* _NGX_SEGURA_DEPLOY_PROGRAM_H_INCLUDED_ */
