package fs

import (
	"fmt"
	"os"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// BenchmarkCreateUnlink is a profiling aid for the small-file path (the
// comparison with native and plain loopback is `make bench`).
func BenchmarkCreateUnlink(b *testing.B) {
	tm := newTestMount(b)
	data := make([]byte, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := tm.path(fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateUnlinkLoopback is the same loop on plain go-fuse
// loopback with georep's mount options, for an A/B comparison.
func BenchmarkCreateUnlinkLoopback(b *testing.B) {
	_, mnt := mountPlainLoopback(b)
	data := make([]byte, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := fmt.Sprintf("%s/f%d", mnt, i)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
	}
}

func must2(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// benchUnlink unlinks b.N files made in the backing dir beforehand.
func benchUnlink(b *testing.B, backing, mnt string) {
	for i := 0; i < b.N; i++ {
		must2(b, os.WriteFile(fmt.Sprintf("%s/u%d", backing, i), nil, 0o644))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := os.Remove(fmt.Sprintf("%s/u%d", mnt, i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnlink and BenchmarkUnlinkLoopback compare unlink alone.
func BenchmarkUnlink(b *testing.B) {
	tm := newTestMount(b)
	benchUnlink(b, tm.backing, tm.mnt)
}

func BenchmarkUnlinkLoopback(b *testing.B) {
	back, mnt := mountPlainLoopback(b)
	benchUnlink(b, back, mnt)
}

// mountPlainLoopback mounts go-fuse's plain loopback with georep's mount
// options, for A/B comparisons; it is unmounted when the benchmark ends.
func mountPlainLoopback(b *testing.B) (back, mnt string) {
	requireFuse(b)
	dir := b.TempDir()
	back, mnt = dir+"/b", dir+"/m"
	must2(b, os.Mkdir(back, 0o755))
	must2(b, os.Mkdir(mnt, 0o755))
	root, err := gofs.NewLoopbackRoot(back)
	must2(b, err)
	sec := time.Second
	srv, err := gofs.Mount(mnt, root, &gofs.Options{EntryTimeout: &sec, AttrTimeout: &sec, MountOptions: MountOptions(back, false)})
	must2(b, err)
	b.Cleanup(func() { srv.Unmount() })
	return back, mnt
}

// BenchmarkSeqWrite and BenchmarkSeqWriteLoopback write 256 MiB in 1 MiB
// writes and fsync, per op.
func BenchmarkSeqWrite(b *testing.B) {
	benchSeqWrite(b, newTestMount(b).mnt)
}

func BenchmarkSeqWriteLoopback(b *testing.B) {
	_, mnt := mountPlainLoopback(b)
	benchSeqWrite(b, mnt)
}

func benchSeqWrite(b *testing.B, mnt string) {
	buf := make([]byte, 1<<20)
	b.SetBytes(256 << 20)
	for i := 0; i < b.N; i++ {
		p := fmt.Sprintf("%s/big%d", mnt, i)
		f, err := os.Create(p)
		must2(b, err)
		for k := 0; k < 256; k++ {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		must2(b, f.Sync())
		must2(b, f.Close())
		must2(b, os.Remove(p))
	}
}
