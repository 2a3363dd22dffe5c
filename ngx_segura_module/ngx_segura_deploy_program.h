
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The fixed commands of POST /api/keys/{id}/deploy and /withdraw
 * (ngx_segura_api_keys_deploy.c) and of key rotation (ADD, then
 * REMOVE_KEY), as C string constants: no other file may build a command
 * for a device.  Plain C, no nginx headers, so that t/deploy_program.t
 * can print them and run them under several shells.
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

/*
 * REMOVE_KEY (rotation, phase 2): removes every line whose key is the
 * stdin line's key, whatever its options and comment.  A line is the key's
 * when two consecutive blank-separated fields are the stdin line's first
 * two (type and base64); a CR ending the line is ignored (a file edited on
 * Windows: OpenSSH reads "<type> <base64>\r" as the key), comment lines
 * (#) never match.  A key's type and blob in another line's comment do
 * match (that is the rule); the blob alone in an option or comment does
 * not.
 *
 * The awk program is a constant; the two fields reach it through its
 * environment (ENVIRON), never as program text; it reads the file on
 * stdin and exits 0 when a line matched, 3 when none did, else it failed.
 * The first pass (SEGURA_C set) writes nothing, only the number of lines
 * to keep: nothing matches, the file is left alone (its mtime too).  The
 * second writes the kept lines, byte for byte, into the temporary file,
 * whose line count must then be that number (an awk that ignores a full
 * disk must not empty the file).
 */

#define NGX_SEGURA_DEPLOY_REMOVE_KEY_AWK                                     \
    "BEGIN { t = ENVIRON[\\\"SEGURA_T\\\"] \\\"\\\"; "                       \
    "b = ENVIRON[\\\"SEGURA_B\\\"] \\\"\\\"; "                               \
    "c = ENVIRON[\\\"SEGURA_C\\\"] \\\"\\\"; "                               \
    "while ((r = (getline l)) > 0) { s = l; sub(/\\r\\$/, \\\"\\\", s); "    \
    "n = split(s, w); if (w[1] ~ /^#/) n = 0; m = 0; "                       \
    "for (i = 1; i < n; i++) if (w[i] == t && w[i + 1] == b) m = 1; "        \
    "if (m) d = 1; else if (c) k++; else print l } "                         \
    "if (c) print k + 0; exit (r < 0 ? 2 : (d ? 0 : 3)) }"

#define NGX_SEGURA_DEPLOY_REMOVE_KEY                                         \
    NGX_SEGURA_DEPLOY_PRELUDE                                                \
    "set -f; set -- $k; [ $# -ge 2 ] || die not a key line; "                \
    "[ -f $f ] || { echo unchanged; exit 0; }; "                             \
    "p=\"" NGX_SEGURA_DEPLOY_REMOVE_KEY_AWK "\"; "                           \
    "c=$(SEGURA_C=1 SEGURA_T=$1 SEGURA_B=$2 awk \"$p\" < $f); r=$?; "        \
    "[ $r -eq 3 ] && { echo unchanged; exit 0; }; "                          \
    "[ $r -eq 0 ] || die cannot read $f; "                                   \
    "t=$(mktemp .ssh/.authorized_keys.XXXXXX) "                              \
    "|| die cannot create a file in ~/.ssh; "                                \
    "cp -p $f \"$t\" || die cannot copy $f; "                                \
    "SEGURA_T=$1 SEGURA_B=$2 awk \"$p\" < $f > \"$t\"; r=$?; "               \
    "[ $r -eq 3 ] && { rm -f \"$t\"; echo unchanged; exit 0; }; "            \
    "n=$(wc -l < \"$t\"); [ $r -eq 0 ] && [ $((n)) -eq $c ] "               \
    "|| die cannot write; "                                                  \
    "mv -f \"$t\" $f || die cannot rename over $f; echo withdrawn"

#define NGX_SEGURA_DEPLOY_COMMAND(program)  "exec /bin/sh -c '" program "'"

#define NGX_SEGURA_DEPLOY_ADD_COMMAND                                        \
    NGX_SEGURA_DEPLOY_COMMAND(NGX_SEGURA_DEPLOY_ADD)

#define NGX_SEGURA_DEPLOY_REMOVE_COMMAND                                     \
    NGX_SEGURA_DEPLOY_COMMAND(NGX_SEGURA_DEPLOY_REMOVE)

#define NGX_SEGURA_DEPLOY_REMOVE_KEY_COMMAND                                 \
    NGX_SEGURA_DEPLOY_COMMAND(NGX_SEGURA_DEPLOY_REMOVE_KEY)


#endif /* _NGX_SEGURA_DEPLOY_PROGRAM_H_INCLUDED_ */
