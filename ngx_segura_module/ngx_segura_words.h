
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_WORDS_H_INCLUDED_
#define _NGX_SEGURA_WORDS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * The word scanner of the recordings' search (docs/recording.md, "Search"):
 * terminal output in, words out, as a person reads the screen.  Plain C, no
 * nginx types, no allocation, no globals but a constant table: any thread.
 *
 * Word characters are ASCII letters and digits, '_' and every byte >= 0x80
 * (UTF-8 passes through); '-', '.', '/', ':' and '@' join word characters
 * into a compound ("/etc/passwd", "10.0.0.1", "root@web01"); everything
 * else separates.  A scanner emits each part (a run of word characters)
 * and, when a run of word characters and joiners has a joiner inside, the
 * compound too, trimmed of joiners at its ends.  ASCII is lowercased.
 * Words shorter than NGX_SEGURA_WORDS_MIN or longer than
 * NGX_SEGURA_WORDS_MAX bytes are not emitted (a long word is ignored, not
 * cut: base64 and keys are not words), nor are words of
 * NGX_SEGURA_WORDS_RANDOM bytes or more that mix upper case, lower case and
 * digits (base64, tokens: each is new, and would cost the index as much as
 * a page of text).
 *
 * Escape sequences are stripped: CSI (ESC [ ... final), OSC (ESC ] ...
 * ended by BEL or ESC \), DCS, SOS, PM, APC (ESC P, X, ^, _ ... ESC \),
 * and ESC with intermediates (charset selects such as ESC ( B).  A colour
 * (CSI ... m), an OSC (a title) or a charset select inside a word does
 * not cut it; any other sequence (cursor movement) and every control byte
 * does.  State is carried between feeds: a sequence or a word cut between
 * two reads is read whole.
 */


#define NGX_SEGURA_WORDS_MIN    2
#define NGX_SEGURA_WORDS_MAX    40
#define NGX_SEGURA_WORDS_RANDOM 8

/* what text callbacks get for the end of a line (CR or LF) */
#define NGX_SEGURA_WORDS_EOL    '\n'


/*
 * a word (lowercased, len bytes) that began at time t; the 7 bytes after
 * it may be read (their values do not matter)
 */
typedef void (*ngx_segura_words_word_pt)(void *data, const unsigned char *w,
    size_t len, uint32_t t);

/*
 * a visible byte as the screen shows it (not lowercased), a separator as
 * ' ', or NGX_SEGURA_WORDS_EOL; called after the word it ends
 */
typedef void (*ngx_segura_words_text_pt)(void *data, unsigned char c);


typedef struct {
    ngx_segura_words_word_pt   word;
    ngx_segura_words_text_pt   text;      /* may be NULL */
    void                      *data;

    unsigned                   state;
    uint32_t                   part_t;
    uint32_t                   comp_t;

    /*
     * One buffer: the compound so far (comp_len bytes, its last
     * comp_trail_stored of them joiners) with the current part at
     * part_off; once the compound is too long (comp_over), the part alone
     * from 0.  part_len counts past NGX_SEGURA_WORDS_MAX (then ignored).
     */
    size_t                     part_off;
    size_t                     part_len;
    size_t                     comp_len;
    size_t                     comp_trail;
    size_t                     comp_trail_stored;
    unsigned                   comp_joined;
    unsigned                   comp_over;
    unsigned                   part_mix;  /* 1 upper, 2 lower, 4 digit */
    unsigned                   comp_mix;
    /* 8 more: the index reads a word's bytes 8 at a time */
    unsigned char              buf[NGX_SEGURA_WORDS_MAX + 8];
} ngx_segura_words_t;


void ngx_segura_words_init(ngx_segura_words_t *ws,
    ngx_segura_words_word_pt word, ngx_segura_words_text_pt text,
    void *data);

/* bytes read at time t */
void ngx_segura_words_feed(ngx_segura_words_t *ws, const unsigned char *p,
    size_t len, uint32_t t);

/* the end of the stream: emits the word in progress, forgets the state */
void ngx_segura_words_end(ngx_segura_words_t *ws);

/* wipes the scanner (its buffers hold output) */
void ngx_segura_words_wipe(ngx_segura_words_t *ws);


#endif /* _NGX_SEGURA_WORDS_H_INCLUDED_ */
