-- 019_recording_index: what a chunk tells in clear for seeking.
--
-- Why: the Replay view shows the whole session's timeline (its markers as
-- chapters) and loads only a window of a long recording around the
-- position; the first event of a window must be drawn at the terminal's
-- size at that moment.  Neither can come from the sealed events without
-- opening every chunk of the recording.
--
-- cols, rows: the terminal's size when the chunk's first event happened
-- (a resize inside the chunk is in its events).  markers: the chunk's
-- markers and exits as a json array of [ms since the start, "text"]
-- (null: none), at most 4 KiB of them; the sealed events have them all.
-- Marker texts are the proxy's own (session started/ended, gaps, exits,
-- who watched), never what the device printed or the user typed, so the
-- output stays sealed.  Chunks written before this migration have nulls:
-- their size is the recording's, their markers are not in the index.

alter table ssh_session_chunks
    add column cols integer check (cols between 1 and 1000),
    add column rows integer check (rows between 1 and 1000),
    add column markers jsonb;
