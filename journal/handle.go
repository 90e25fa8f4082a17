package journal

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// EncodeHandle is the form a file handle takes in a record: its type as 4
// bytes, little endian, then the handle's bytes.
func EncodeHandle(h unix.FileHandle) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(h.Type())), h.Bytes()...)
}

// DecodeHandle reverses EncodeHandle; ok is false for bytes that cannot
// be a handle.
func DecodeHandle(b []byte) (h unix.FileHandle, ok bool) {
	if len(b) < 5 || len(b) > 4+128 { // MAX_HANDLE_SZ is 128
		return h, false
	}
	return unix.NewFileHandle(int32(binary.LittleEndian.Uint32(b)), b[4:]), true
}
