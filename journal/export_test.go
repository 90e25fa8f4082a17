package journal

// Hooks for the external tests (package journal_test), which import the
// index and so cannot live in package journal.

// EncodeRecordFrame appends a record frame to buf.
func EncodeRecordFrame(buf []byte, intentID uint64, r *Record) ([]byte, error) {
	return encodeRecord(buf, intentID, r)
}

// CloseFrame appends a session-close frame to buf.
func CloseFrame(buf []byte, ino, openSeq uint64) []byte {
	return appendFrame(buf, kindClose, u64(ino), u64(openSeq))
}
