package journal

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// logFile is the journal's write-ahead log on disk: a file whose blocks are
// allocated up front (fallocate) and mapped into memory. Appending a frame
// is a copy into the shared mapping: no system call, yet the bytes are in
// the kernel's page cache the moment the copy ends, so they survive a kill
// of the daemon exactly as a write(2) would. fdatasync(2) on the file
// writes the mapped pages out, for power loss. Because the blocks exist
// before they are written, a full disk shows as an error when the log
// grows, never as a SIGBUS on a write to the mapping. The unused tail is
// zeros, which replay reads as the end of the log.
type logFile struct {
	f     *os.File
	data  []byte // the mapping
	off   int    // where the next frame goes
	dirty bool   // frames appended since the last sync
}

// logInitialSize is the size a new log is allocated with; it doubles as
// needed until the flusher rotates it.
const logInitialSize = 4 << 20

// createLog creates (truncating) the log at path.
func createLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal log: %w", err)
	}
	l := &logFile{f: f}
	if err := l.resize(logInitialSize); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return l, nil
}

// resize allocates size bytes of blocks for the file and maps them.
func (l *logFile) resize(size int) error {
	if err := unix.Fallocate(int(l.f.Fd()), 0, 0, int64(size)); err != nil {
		return fmt.Errorf("allocate %d bytes of journal log: %w", size, err)
	}
	data, err := unix.Mmap(int(l.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map journal log: %w", err)
	}
	if l.data != nil {
		unix.Munmap(l.data)
	}
	l.data = data
	return nil
}

// append copies frames to the end of the log, growing it if needed. On
// error nothing was written.
func (l *logFile) append(frames []byte) error {
	if l.data == nil {
		return errors.New("journal log is closed")
	}
	if need := l.off + len(frames); need > len(l.data) {
		size := len(l.data)
		for size < need {
			size *= 2
		}
		if err := l.resize(size); err != nil {
			return err
		}
	}
	copy(l.data[l.off:], frames)
	l.off += len(frames)
	l.dirty = true
	return nil
}

// close unmaps and closes the log.
func (l *logFile) close() error {
	var err error
	if l.data != nil {
		err = unix.Munmap(l.data)
		l.data = nil
	}
	return errors.Join(err, l.f.Close())
}
