
/*
 * Copyright (C) The ngx_segura_module authors
 */


/*
 * Unit tests of ngx_segura_words.c (the search's word scanner: escape
 * sequences stripped, words, compounds, bounds, state across feeds) and
 * ngx_segura_index.c (SipHash-2-4 vectors, the key, the per-chunk set and
 * its array literals), then a seeded random-input loop: any input cut
 * anywhere gives the words it gives whole (SEGURA_SEED repeats a run; the
 * seed is printed on failure).
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "ngx_segura_words.h"
#include "ngx_segura_index.h"


typedef struct {
    char      text[8192];   /* "word@t word@t ..." */
    size_t    len;
    char      screen[8192];
    size_t    slen;
} got_t;


static unsigned  seed;


static void
on_word(void *data, const unsigned char *w, size_t len, uint32_t t)
{
    got_t  *g = data;

    g->len += snprintf(g->text + g->len, sizeof(g->text) - g->len,
                       "%s%.*s@%u", g->len ? " " : "", (int) len,
                       (const char *) w, t);
    assert_true(g->len < sizeof(g->text));
}


static void
on_text(void *data, unsigned char c)
{
    got_t  *g = data;

    if (g->slen + 1 < sizeof(g->screen)) {
        g->screen[g->slen++] = (char) c;
        g->screen[g->slen] = '\0';
    }
}


static const char *
scan(got_t *g, const char *in, size_t len, size_t cut)
{
    ngx_segura_words_t  ws;

    memset(g, 0, sizeof(got_t));
    ngx_segura_words_init(&ws, on_word, on_text, g);

    if (cut == 0 || cut >= len) {
        ngx_segura_words_feed(&ws, (const unsigned char *) in, len, 0);

    } else {
        ngx_segura_words_feed(&ws, (const unsigned char *) in, cut, 0);
        ngx_segura_words_feed(&ws, (const unsigned char *) in + cut,
                              len - cut, 7);
    }

    ngx_segura_words_end(&ws);

    return g->text;
}


#define WORDS(in, expect)                                                    \
    do {                                                                     \
        got_t  g_;                                                           \
        assert_string_equal(scan(&g_, in, sizeof(in) - 1, 0), expect);        \
    } while (0)


static void
test_plain(void **state)
{
    (void) state;

    WORDS("Hello, World!  foo_bar 42\r\n", "hello@0 world@0 foo_bar@0 42@0");
    WORDS("a b cc", "cc@0");
    WORDS("", "");
    WORDS("\t\tTAB\x08x", "tab@0");
}


static void
test_compounds(void **state)
{
    (void) state;

    WORDS("cat /etc/passwd.", "cat@0 etc@0 passwd@0 etc/passwd@0");
    WORDS("root@web01:~$ ", "root@0 web01@0 root@web01@0");
    WORDS("10.0.0.1", "10@0 10.0.0.1@0");
    WORDS("--help", "help@0");
    WORDS("done.", "done@0");
}


static void
test_escapes(void **state)
{
    (void) state;

    /* a colour inside or around a word leaves it whole */
    WORDS("\x1b[01;31mERR\x1b[0mOR here", "error@0 here@0");
    WORDS("\x1b[1;32muser\x1b[m", "user@0");

    /* cursor movement cuts */
    WORDS("abc\x1b[2Cdef", "abc@0 def@0");
    WORDS("abc\x1b" "7def", "abc@0 def@0");

    /* OSC, ended by BEL or ST: no word of the title */
    WORDS("\x1b]0;secret title\x07visible", "visible@0");
    WORDS("\x1b]2;hidden words\x1b\\shown", "shown@0");
    WORDS("\x1bPdcs stuff\x1b\\after", "after@0");

    /* charset selects */
    WORDS("\x1b(Bplain\x1b)0text", "plaintext@0");

    /* CAN aborts a CSI */
    WORDS("ab\x1b[12\x18zz", "ab@0 zz@0");
}


static void
test_bounds(void **state)
{
    (void) state;

    char  in[200];

    /* 40 bytes are a word, 41 are not */
    memset(in, 'a', 40);
    memcpy(in + 40, " ", 2);
    WORDS("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa x",
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@0");
    WORDS("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ok", "ok@0");

    /* a long compound is not a word, its short parts are */
    WORDS("aaaaaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbbbbbbbb",
          "aaaaaaaaaaaaaaaaaaaaaaa@0 bbbbbbbbbbbbbbbbbbbbbbbbbb@0");
    (void) in;
}


static void
test_utf8(void **state)
{
    (void) state;

    WORDS("na\xc3\xafve Caf\xc3\x89!", "na\xc3\xafve@0 caf\xc3\x89@0");

    /* random-looking: 8 bytes or more of upper, lower and digits */
    WORDS("aB3dEf7h aB3dEf7 Python3 ConnectionRefusedError",
          "ab3def7@0 python3@0 connectionrefusederror@0");
    WORDS("ok/aB3dEf7hIjK9", "ok@0");   /* the compound too */
}


static void
test_across_feeds(void **state)
{
    (void) state;

    got_t        g;
    const char  *in = "say \x1b[31mhel\x1b]0;t\x07lo\x1b[0m world\n";
    size_t       len, cut;

    len = strlen(in);

    for (cut = 1; cut < len; cut++) {
        scan(&g, in, len, cut);

        /* the time is the start of the word */
        if (cut <= (size_t) (strstr(in, "hel") - in)) {
            assert_string_equal(g.text, "say@0 hello@7 world@7");

        } else if (cut <= (size_t) (strstr(in, "world") - in)) {
            assert_string_equal(g.text, "say@0 hello@0 world@7");

        } else {
            assert_string_equal(g.text, "say@0 hello@0 world@0");
        }
    }
}


static void
test_screen(void **state)
{
    got_t        g;
    const char  *in;

    (void) state;

    in = "\x1b[1mA\x1b[0mb\tc\r\nd";
    scan(&g, in, strlen(in), 0);
    assert_string_equal(g.screen, "Ab c\n\nd");
}


static void
test_siphash(void **state)
{
    (void) state;

    unsigned char  k[16], in[64];
    size_t         i;

    /* the reference vectors of the SipHash paper, appendix A */

    for (i = 0; i < 16; i++) {
        k[i] = (unsigned char) i;
    }

    for (i = 0; i < 64; i++) {
        in[i] = (unsigned char) i;
    }

    assert_true(ngx_segura_index_siphash(k, in, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(ngx_segura_index_siphash(k, in, 15) == 0xa129ca6149be45e5ULL);
    assert_true(ngx_segura_index_siphash(k, in, 8) == 0x93f5f5799a932462ULL);
}


static void
test_index(void **state)
{
    size_t               fl, i, fp;
    int64_t              h[3], x;
    char                 word[32];
    unsigned char       *f, master[32], other[32], k2[16];
    ngx_segura_index_t   idx;

    (void) state;

    memset(master, 7, sizeof(master));
    memset(other, 8, sizeof(other));

    assert_int_equal(ngx_segura_index_init(&idx, master, 32, 3), 0);

    ngx_segura_index_feed(&idx, (const unsigned char *) "Foo bar ", 8, 5);
    ngx_segura_index_feed(&idx, (const unsigned char *) "foo baz", 7, 9);
    ngx_segura_index_end(&idx);

    /* each word once */
    assert_int_equal(idx.n, 3);
    assert_int_equal(ngx_segura_index_take(&idx, &f, &fl), 0);
    assert_int_equal(idx.n, 0);

    /* 3 words: the 64-bit floor */
    assert_int_equal(fl, 8);
    assert_int_equal(fl, ngx_segura_index_filter_len(3));

    h[0] = ngx_segura_index_hash(idx.key, (const unsigned char *) "foo", 3);
    h[1] = ngx_segura_index_hash(idx.key, (const unsigned char *) "bar", 3);
    h[2] = ngx_segura_index_hash(idx.key, (const unsigned char *) "baz", 3);

    for (i = 0; i < 3; i++) {
        assert_true(ngx_segura_index_maybe(f, fl, h[i]));
    }

    assert_true(h[0] != h[1] && h[1] != h[2] && h[0] != h[2]);
    free(f);

    /* the same key as derive gives; another master key, another hash */
    assert_int_equal(ngx_segura_index_derive(master, 32, k2), 0);
    assert_memory_equal(k2, idx.key, 16);
    assert_int_equal(ngx_segura_index_derive(other, 32, k2), 0);
    assert_true(ngx_segura_index_hash(k2, (const unsigned char *) "foo", 3)
                != h[0]);

    /* an empty set: no filter */
    assert_int_equal(ngx_segura_index_take(&idx, &f, &fl), 0);
    assert_null(f);
    assert_int_equal(fl, 0);
    assert_false(ngx_segura_index_maybe(NULL, 0, h[0]));

    /* the sizes: a byte a word, at least 8 */
    assert_int_equal(ngx_segura_index_filter_len(0), 8);
    assert_int_equal(ngx_segura_index_filter_len(8), 8);
    assert_int_equal(ngx_segura_index_filter_len(9), 9);
    assert_int_equal(ngx_segura_index_filter_len(1000), 1000);
    assert_int_equal(ngx_segura_index_filter_len(1536), 1536);

    /*
     * 1000 words: every one is in the filter, and about 2 % of 100000
     * other words seem to be (the rate the sizes are for)
     */
    for (i = 0; i < 1000; i++) {
        snprintf(word, sizeof(word), "w%zu ", i);
        ngx_segura_index_feed(&idx, (unsigned char *) word, strlen(word), 0);
    }

    assert_int_equal(idx.n, 1000);
    assert_int_equal(ngx_segura_index_take(&idx, &f, &fl), 0);
    assert_int_equal(fl, 1000);

    for (i = 0; i < 1000; i++) {
        snprintf(word, sizeof(word), "w%zu", i);
        x = ngx_segura_index_hash(idx.key, (unsigned char *) word,
                                  strlen(word));
        assert_true(ngx_segura_index_maybe(f, fl, x));
    }

    fp = 0;

    for (i = 0; i < 100000; i++) {
        snprintf(word, sizeof(word), "x%zu", i);
        x = ngx_segura_index_hash(idx.key, (unsigned char *) word,
                                  strlen(word));
        fp += ngx_segura_index_maybe(f, fl, x);
    }

    print_message("false positives: %zu of 100000\n", fp);
    assert_true(fp > 1500 && fp < 3000);
    free(f);

    ngx_segura_index_free(&idx);
}


static void
test_index_bound(void **state)
{
    (void) state;

    char                 word[32];
    size_t               i;
    unsigned char        master[32];
    ngx_segura_index_t   idx;

    memset(master, 1, sizeof(master));
    assert_int_equal(ngx_segura_index_init(&idx, master, 32, 1), 0);

    for (i = 0; i < 3000; i++) {
        snprintf(word, sizeof(word), "w%zu ", i);
        ngx_segura_index_feed(&idx, (unsigned char *) word, strlen(word), 0);
    }

    assert_int_equal(idx.n, NGX_SEGURA_INDEX_WORDS);
    assert_int_equal(idx.lost, 3000 - NGX_SEGURA_INDEX_WORDS);

    ngx_segura_index_release(&idx);
    assert_int_equal(idx.slots, 0);
    ngx_segura_index_free(&idx);
}


static void
test_random(void **state)
{
    (void) state;

    got_t          a, b;
    unsigned char  in[512];
    size_t         i, n, cut;
    unsigned       round;
    static const char  alphabet[] =
        "ab Z9_-./:@\x1b[]m;0\x07\\(\r\n\x18\xc3\xa9";

    srand(seed);

    for (round = 0; round < 20000; round++) {
        n = (size_t) rand() % sizeof(in);

        for (i = 0; i < n; i++) {
            in[i] = (rand() % 4) ? (unsigned char) alphabet[rand()
                                         % (sizeof(alphabet) - 1)]
                                 : (unsigned char) rand();
        }

        cut = n ? (size_t) rand() % n : 0;

        scan(&a, (char *) in, n, 0);
        scan(&b, (char *) in, n, cut);

        /* the same words in the same order, whatever the times */
        {
            char   wa[8192], wb[8192];
            char  *s, *d;
            int    skip;

            for (s = a.text, d = wa, skip = 0; *s; s++) {
                if (*s == '@' && (s[1] >= '0' && s[1] <= '9')
                    && (s[2] == '\0' || s[2] == ' '))
                {
                    skip = 1;
                }

                if (*s == ' ') {
                    skip = 0;
                }

                if (!skip) {
                    *d++ = *s;
                }
            }

            *d = '\0';

            for (s = b.text, d = wb, skip = 0; *s; s++) {
                if (*s == '@' && (s[1] >= '0' && s[1] <= '9')
                    && (s[2] == '\0' || s[2] == ' '))
                {
                    skip = 1;
                }

                if (*s == ' ') {
                    skip = 0;
                }

                if (!skip) {
                    *d++ = *s;
                }
            }

            *d = '\0';

            if (strcmp(wa, wb) != 0) {
                fprintf(stderr, "seed %u round %u cut %zu:\n%s\n%s\n", seed,
                        round, cut, wa, wb);
                fail();
            }
        }

        assert_string_equal(a.screen, b.screen);
    }
}


int
main(void)
{
    const char  *s;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_compounds),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_across_feeds),
        cmocka_unit_test(test_screen),
        cmocka_unit_test(test_siphash),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_index_bound),
        cmocka_unit_test(test_random),
    };

    s = getenv("SEGURA_SEED");
    seed = s ? (unsigned) strtoul(s, NULL, 10) : (unsigned) time(NULL);
    printf("test_words: seed %u\n", seed);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
