package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"golang.org/x/sys/unix"
)

// Verify compares the primary's tree with a replica's, entry by entry:
// type, permissions, owner, size, content (SHA-256), mtime (not of the
// volume root, whose own entries differ), link target, device, xattrs and
// the link count of files. Both sides walk in the same order (depth
// first, names sorted), so the comparison is a merge of two streams.

// Difference is one entry that differs between the two trees.
type Difference struct {
	Path    string `json:"path"`
	What    string `json:"what"`
	Primary string `json:"primary,omitempty"`
	Replica string `json:"replica,omitempty"`
}

// walkManifest calls fn for every entry below the directory root, in
// walk order, with the content hash of regular files.
func walkManifest(ctx context.Context, root int, fn func(*Item) error) error {
	return walkManifestDir(ctx, root, "", fn)
}

func walkManifestDir(ctx context.Context, fd int, path string, fn func(*Item) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := listNames(fd, path == "")
	if err != nil {
		return fmt.Errorf("list %q: %w", path, err)
	}
	for _, name := range names {
		e, err := entryOf(fd, name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %q: %w", joinPath(path, name), err)
		}
		it := &Item{Path: joinPath(path, name), Mode: e.Mode, UID: e.UID, GID: e.GID, Size: e.Size,
			Mtime: e.Mtime, Target: e.Target, Rdev: e.Rdev, Xattrs: e.Xattrs}
		switch e.Type() {
		case typeReg:
			it.Nlink = e.Nlink
			if it.Hash, err = hashFile(fd, name); err != nil {
				return fmt.Errorf("hash %q: %w", it.Path, err)
			}
		}
		if err := fn(it); err != nil {
			return err
		}
		if e.Type() == typeDir {
			child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open %q: %w", it.Path, err)
			}
			err = walkManifestDir(ctx, child, it.Path, fn)
			unix.Close(child)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func hashFile(dirfd int, name string) ([]byte, error) {
	f, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(f)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fdReaderAt(f), 0, 1<<62)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// serveVerify streams the replica's manifest.
func (r *Receiver) serveVerify(ctx context.Context, c *Conn, h *Hello, claim *Claim) error {
	if err := c.Send(TWelcome, &Welcome{Proto: Proto, Volume: h.Volume, Claim: claim}); err != nil {
		return err
	}
	var m Manifest
	size := 0
	err := walkManifest(ctx, r.root, func(it *Item) error {
		m.Items = append(m.Items, *it)
		size += len(it.Path) + 200
		for k, v := range it.Xattrs {
			size += len(k) + len(v)*2
		}
		if size < MaxFrame/4 {
			return nil
		}
		err := c.Send(TManifest, &m)
		m.Items, size = m.Items[:0], 0
		return err
	})
	if err != nil {
		return err
	}
	m.Last = true
	if err := c.Send(TManifest, &m); err != nil {
		return err
	}
	return c.Flush()
}

// Verify compares this primary's tree with the replica of the peer named
// name (every peer when name is ""), returning the differences per peer.
func (e *Engine) Verify(ctx context.Context, name string) (map[string][]Difference, error) {
	if !e.Shipping() {
		return nil, errors.New("this node is not the primary: run verify on the primary")
	}
	e.mu.Lock()
	var ss []*shipper
	for _, s := range e.shippers {
		if name == "" || s.peer.Name == name {
			ss = append(ss, s)
		}
	}
	e.mu.Unlock()
	if len(ss) == 0 {
		if name != "" {
			return nil, fmt.Errorf("no peer named %q", name)
		}
		return nil, errors.New("no peers to verify")
	}
	out := map[string][]Difference{}
	for _, s := range ss {
		diffs, err := s.verify(ctx)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", s.peer.Name, err)
		}
		out[s.peer.Name] = diffs
	}
	return out, nil
}

func (s *shipper) verify(ctx context.Context) ([]Difference, error) {
	c, _, err := s.e.Dial(ctx, s.peer, PurposeVerify)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.idle = 10 * idleTimeout // the replica hashes its whole tree
	// The replica's stream, read as the primary's walk goes.
	var pending []Item
	last := false
	next := func() (*Item, error) {
		for len(pending) == 0 {
			if last {
				return nil, nil
			}
			var m Manifest
			if err := c.Expect(TManifest, &m); err != nil {
				return nil, err
			}
			pending, last = m.Items, m.Last
		}
		it := pending[0]
		pending = pending[1:]
		return &it, nil
	}
	var diffs []Difference
	rep, err := next()
	if err != nil {
		return nil, err
	}
	err = walkManifest(ctx, s.e.cfg.Root, func(p *Item) error {
		for rep != nil && comparePaths(rep.Path, p.Path) < 0 {
			diffs = append(diffs, Difference{Path: rep.Path, What: "only on the replica"})
			if rep, err = next(); err != nil {
				return err
			}
		}
		if rep == nil || rep.Path != p.Path {
			diffs = append(diffs, Difference{Path: p.Path, What: "missing on the replica"})
			return nil
		}
		diffs = append(diffs, compareItems(p, rep)...)
		rep, err = next()
		return err
	})
	if err != nil {
		return nil, err
	}
	for rep != nil {
		diffs = append(diffs, Difference{Path: rep.Path, What: "only on the replica"})
		if rep, err = next(); err != nil {
			return nil, err
		}
	}
	return diffs, nil
}

// comparePaths orders paths as the walk visits them: name by name.
func comparePaths(a, b string) int {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		an, bn := a, b
		if ai >= 0 {
			an = a[:ai]
		}
		if bi >= 0 {
			bn = b[:bi]
		}
		if c := strings.Compare(an, bn); c != 0 {
			return c
		}
		switch {
		case ai < 0 && bi < 0:
			return 0
		case ai < 0:
			return -1
		case bi < 0:
			return 1
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

func compareItems(p, r *Item) []Difference {
	var out []Difference
	diff := func(what string, a, b any) {
		out = append(out, Difference{Path: p.Path, What: what, Primary: fmt.Sprint(a), Replica: fmt.Sprint(b)})
	}
	if p.Mode&typeMask != r.Mode&typeMask {
		diff("type", fmt.Sprintf("%o", p.Mode&typeMask), fmt.Sprintf("%o", r.Mode&typeMask))
		return out
	}
	if p.Mode != r.Mode && p.Mode&typeMask != typeLnk {
		diff("mode", fmt.Sprintf("%o", p.Mode&0o7777), fmt.Sprintf("%o", r.Mode&0o7777))
	}
	if p.UID != r.UID || p.GID != r.GID {
		diff("owner", fmt.Sprintf("%d:%d", p.UID, p.GID), fmt.Sprintf("%d:%d", r.UID, r.GID))
	}
	if p.Size != r.Size {
		diff("size", p.Size, r.Size)
	}
	if !bytes.Equal(p.Hash, r.Hash) {
		diff("content", fmt.Sprintf("%x", p.Hash), fmt.Sprintf("%x", r.Hash))
	}
	if p.Mtime != r.Mtime {
		diff("mtime", nsTime(p.Mtime).UTC().Format("2006-01-02T15:04:05.000000000Z"), nsTime(r.Mtime).UTC().Format("2006-01-02T15:04:05.000000000Z"))
	}
	if p.Target != r.Target {
		diff("link target", p.Target, r.Target)
	}
	if p.Rdev != r.Rdev {
		diff("device", p.Rdev, r.Rdev)
	}
	if p.Nlink != r.Nlink {
		diff("link count", p.Nlink, r.Nlink)
	}
	if !maps.EqualFunc(p.Xattrs, r.Xattrs, bytes.Equal) {
		diff("xattrs", len(p.Xattrs), len(r.Xattrs))
	}
	return out
}
