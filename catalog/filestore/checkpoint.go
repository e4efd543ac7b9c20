package filestore

// Checkpoints: where a read of a stream's events may start without decoding what comes before.
// Both formats' event indexes keep one every CheckpointRows rows or CheckpointBytes bytes of
// file, whichever comes first, so that a read from any row walks over a bounded stretch: small
// rows (a million scalar events) are bounded by the count, large ones (32 KiB spectra) by the
// bytes. And at any document that follows its stream's previous one by more than
// CheckpointGap bytes of other documents, so that a sparse stream (a baseline in a long run)
// does not cost a walk over everything between its documents.
const (
	CheckpointRows  = 1024
	CheckpointBytes = 256 << 10
	CheckpointGap   = 64 << 10
)

// NeedCheckpoint reports whether a stream's document at offset off needs a checkpoint, given
// its last checkpoint (at lastOff, lastRow; ok false when it has none), its row count so far
// and the end of its previous document.
func NeedCheckpoint(ok bool, lastOff, lastRow, off, rows, prevEnd int64) bool {
	return !ok || rows-lastRow >= CheckpointRows || off-lastOff >= CheckpointBytes || off-prevEnd > CheckpointGap
}

// MaxDocument bounds one document of a run file (a msgpack document, a JSONL line), and so
// the memory one reader holds and everything decoded from a document. A longer document is
// skipped without being read into memory, with one log line naming file, offset and size: a
// catalog cannot make brokerfs allocate a 1 GB string. Event values are bounded again, more
// tightly, by the table layer (64 MiB a row).
const MaxDocument = 64 << 20
