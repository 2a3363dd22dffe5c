
/*
 * Copyright (C) The ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_WS_H_INCLUDED_
#define _NGX_SEGURA_WS_H_INCLUDED_


/*
 * RFC 6455 framing for the server side of /session, in plain C: no nginx
 * and no libssh types, so t/unit and t/fuzz compile it alone.
 *
 * Parser contract, in short:
 *
 *     ngx_segura_ws_parser_init(&ws, max_message);
 *
 *     for ( ;; ) {
 *         rc = ngx_segura_ws_parse(&ws, p, last - p, &n, &ev);
 *         p += n;
 *         switch (rc) { ... }       NEED_MORE: all of p..last was consumed
 *     }
 *
 * - One event per call; call again with the rest of the buffer until
 *   NEED_MORE.  NEED_MORE always means every byte given was consumed, so
 *   the caller never keeps leftover bytes: the parser stores whatever part
 *   of a header or of a control payload it has seen.
 * - Every call with len > 0 either consumes at least one byte or returns an
 *   event other than NEED_MORE.  ERROR consumes nothing more and repeats.
 * - DATA slices point into the caller's buffer, inside the consumed range
 *   of this call (ev.data == buf + consumed - ev.len); the bytes were
 *   unmasked in place.  Bytes past *consumed are left untouched.
 * - PING, PONG and CLOSE payloads point into the parser's own buffer and
 *   stay valid until the next call.
 * - A message gives one or more DATA events, the first with
 *   NGX_SEGURA_WS_FIRST, the final one with NGX_SEGURA_WS_LAST (a message
 *   in one event has both; events may be empty only when they carry LAST).
 *   Control frames may come between the DATA events of a message.
 * - The same input gives the same events in any chunking, apart from how
 *   the data of a message is split between its DATA events.  Data before
 *   a protocol error in the same message may be delivered (without LAST)
 *   before the ERROR: a message counts only once LAST was seen.
 * - After CLOSE the parser goes on parsing; the caller should stop reading
 *   (RFC 6455 5.5.1: nothing follows a close frame).
 */


#include <stddef.h>
#include <stdint.h>


#define NGX_SEGURA_WS_OP_CONT          0x0
#define NGX_SEGURA_WS_OP_TEXT          0x1
#define NGX_SEGURA_WS_OP_BINARY        0x2
#define NGX_SEGURA_WS_OP_CLOSE         0x8
#define NGX_SEGURA_WS_OP_PING          0x9
#define NGX_SEGURA_WS_OP_PONG          0xa

/* DATA event flags */
#define NGX_SEGURA_WS_FIRST            0x01
#define NGX_SEGURA_WS_LAST             0x02

#define NGX_SEGURA_WS_CLOSE_NORMAL     1000
#define NGX_SEGURA_WS_CLOSE_GOING_AWAY 1001
#define NGX_SEGURA_WS_CLOSE_PROTOCOL   1002
#define NGX_SEGURA_WS_CLOSE_NO_STATUS  1005
#define NGX_SEGURA_WS_CLOSE_BAD_DATA   1007
#define NGX_SEGURA_WS_CLOSE_TOO_BIG    1009

#define NGX_SEGURA_WS_CONTROL_MAX      125
#define NGX_SEGURA_WS_HEADER_MAX       10  /* server frame header, unmasked */
#define NGX_SEGURA_WS_KEY_LEN          24  /* Sec-WebSocket-Key */
#define NGX_SEGURA_WS_ACCEPT_LEN       28  /* Sec-WebSocket-Accept */


typedef enum {
    NGX_SEGURA_WS_NEED_MORE = 0,
    NGX_SEGURA_WS_DATA,
    NGX_SEGURA_WS_PING,
    NGX_SEGURA_WS_PONG,
    NGX_SEGURA_WS_CLOSE,
    NGX_SEGURA_WS_ERROR
} ngx_segura_ws_event_e;


typedef struct {
    ngx_segura_ws_event_e  type;

    /*
     * DATA: NGX_SEGURA_WS_OP_TEXT or NGX_SEGURA_WS_OP_BINARY (the opcode
     * of the message, also on its continuation frames);
     * PING, PONG, CLOSE: the frame's opcode
     */
    unsigned               opcode;

    /* DATA: NGX_SEGURA_WS_FIRST | NGX_SEGURA_WS_LAST */
    unsigned               flags;

    /*
     * DATA: the slice of the caller's buffer;
     * PING, PONG, CLOSE: the whole payload, in the parser
     */
    unsigned char         *data;
    size_t                 len;

    /*
     * CLOSE: the peer's code, or 1005 if the frame had none;
     * ERROR: the code to close with: 1002, 1007 or 1009
     */
    unsigned               code;

    /*
     * CLOSE: the peer's reason (valid UTF-8, not NUL-terminated), in the
     * parser; ERROR: a short static NUL-terminated reason for the log and
     * for our close frame
     */
    const char            *reason;
    size_t                 reason_len;
} ngx_segura_ws_event_t;


/*
 * Per-connection parser state, embedded by the caller; about 180 bytes.
 * Fields are private to ngx_segura_ws.c.
 */
typedef struct {
    uint64_t               max_message;
    uint64_t               message_size;  /* data message so far */
    uint64_t               remaining;     /* frame length, then payload left */
    const char            *err_reason;
    uint16_t               err_code;
    unsigned char          state;
    unsigned char          opcode;        /* of the current frame */
    unsigned char          fin;
    unsigned char          message;       /* TEXT, BINARY or 0: none open */
    unsigned char          first;         /* FIRST not yet delivered */
    unsigned char          need;          /* length or key bytes to come */
    unsigned char          ext;           /* extended length: 0, 2 or 8 */
    unsigned char          mask_pos;
    unsigned char          utf8_need;
    unsigned char          utf8_lo;
    unsigned char          utf8_hi;
    unsigned char          mask[4];
    unsigned char          control_len;
    unsigned char          control[NGX_SEGURA_WS_CONTROL_MAX];
} ngx_segura_ws_parser_t;


/*
 * Resets the parser for a new connection.  max_message bounds the sum of
 * the payloads of one data message (segura_max_message); a larger message
 * fails with 1009 as soon as its frame header says so.
 */
void ngx_segura_ws_parser_init(ngx_segura_ws_parser_t *ws,
    uint64_t max_message);

/*
 * Parses client frames from buf[0 .. len), unmasking data in place; stores
 * the number of bytes consumed in *consumed and the event in *ev, and
 * returns ev->type.  Never allocates.
 */
ngx_segura_ws_event_e ngx_segura_ws_parse(ngx_segura_ws_parser_t *ws,
    unsigned char *buf, size_t len, size_t *consumed,
    ngx_segura_ws_event_t *ev);

/*
 * Writes the header of an unmasked server frame into buf (at least
 * NGX_SEGURA_WS_HEADER_MAX bytes) and returns its size: 2, 4 or 10.
 * Returns 0 for arguments no valid frame has: an opcode outside
 * 0x0-0x2 and 0x8-0xa, a control frame without fin or longer than 125
 * bytes, or len >= 2^63.
 */
size_t ngx_segura_ws_frame_header(unsigned char *buf, unsigned opcode,
    unsigned fin, uint64_t len);

/*
 * Writes a close frame payload into buf (at least 125 bytes): the code in
 * network order and the longest prefix of reason that is valid UTF-8,
 * ends on a whole character and fits.  Returns its size; code 0 gives an
 * empty payload (no status).
 */
size_t ngx_segura_ws_close_payload(unsigned char *buf, unsigned code,
    const unsigned char *reason, size_t reason_len);

/* 1 if a close frame may carry code (RFC 6455 7.4), else 0 */
int ngx_segura_ws_close_code_valid(unsigned code);

/* 1 if p[0 .. len) is complete, valid UTF-8 (RFC 3629), else 0 */
int ngx_segura_ws_utf8_valid(const unsigned char *p, size_t len);

/*
 * 1 if key is a valid Sec-WebSocket-Key: the canonical base64 of exactly
 * 16 bytes (24 characters ending in "=="), else 0.
 */
int ngx_segura_ws_key_valid(const unsigned char *key, size_t len);

/*
 * Writes Sec-WebSocket-Accept for key (RFC 6455 4.2.2: base64 of the
 * SHA-1 of key and the GUID) into out, NGX_SEGURA_WS_ACCEPT_LEN bytes, not
 * NUL-terminated.  Returns 0, or -1 if key is longer than 64 bytes or
 * OpenSSL fails.
 */
int ngx_segura_ws_accept(unsigned char *out, const unsigned char *key,
    size_t len);

/*
 * 1 if the comma-separated header value list[0 .. len) has token as one of
 * its elements, compared case-insensitively, optional whitespace around
 * elements ignored ("Connection: keep-alive, Upgrade"), else 0.
 */
int ngx_segura_ws_token_list_has(const unsigned char *list, size_t len,
    const char *token);


#endif /* _NGX_SEGURA_WS_H_INCLUDED_ */
