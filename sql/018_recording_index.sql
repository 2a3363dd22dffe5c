-- 018_recording_index: the blind index of the recordings' search.
--
-- Why: GET /api/sessions?q= finds sessions by the words they printed, and
-- an index must not undo the chunks' encryption (a tsvector or trigram
-- index would store the words).  Each chunk carries, in its own row (the
-- same insert, so a chunk and its index never disagree), the distinct
-- words of its output as keyed hashes: SipHash-2-4 under a key derived
-- from the master key index_key names (HMAC-SHA-256 of "segura recording
-- index v1"), with the time (ms since the start) of each word's first
-- occurrence in word_t, same order.  A search hashes its words under every
-- configured master key and looks them up through the GIN index.  Chunks
-- written before this migration have no index (null): they are not found.
-- The writer holds at most 1536 words per chunk (ngx_segura_index.h); the
-- bound here is looser so that a change there never loses a chunk.

alter table ssh_session_chunks
    add column index_key  smallint check (index_key between 0 and 255),
    add column words      bigint[],
    add column word_t     integer[],
    add constraint ssh_session_chunks_words_check
        check ((words is null) = (word_t is null)
               and (words is null or (index_key is not null
                    and cardinality(words) = cardinality(word_t)
                    and cardinality(words) <= 2048)));

create index ssh_session_chunks_words on ssh_session_chunks using gin (words);
