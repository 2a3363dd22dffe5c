-- 018_recording_index: the blind index of the recordings' search.
--
-- Why: GET /api/sessions?q= finds sessions by the words they printed, and
-- an index must not undo the chunks' encryption (a tsvector or trigram
-- index would store the words).  Each chunk carries, in its own row (the
-- same insert, so a chunk and its index never disagree), a Bloom filter of
-- the distinct words of its output: each word is a keyed hash (SipHash-2-4
-- under a key derived from the master key index_key names, HMAC-SHA-256 of
-- "segura recording index v1") that sets 6 bits of the filter, 8 bits
-- (a byte) per word, at least 8 bytes (ngx_segura_index.h).  A search hashes its
-- words under every configured master key and tests their bits with
-- get_bit(); the chunks that may hold them are opened to find the words.
-- Chunks written before this migration, and chunks without words, have no
-- filter (null): they are not found.  The writer holds at most 1536 words
-- per chunk (1536 bytes); the bound here is looser so that a change there
-- never loses a chunk.  No index: a search reads the filters of the
-- sessions it searches (docs/recording.md, "Search").

alter table ssh_session_chunks
    add column index_key  smallint check (index_key between 0 and 255),
    add column filter     bytea,
    add constraint ssh_session_chunks_filter_check
        check (filter is null
               or (index_key is not null
                   and length(filter) between 8 and 8192));
