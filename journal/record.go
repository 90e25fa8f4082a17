package journal

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Op names one kind of journaled mutation. The names are the contract of
// `georep journal --json` (SPEC §5).
type Op string

// The journaled operations. OpResync is not a POSIX operation: recovery
// writes it for a path whose last mutation may or may not have reached the
// backing dir when the daemon died, so the journal cannot vouch for its
// state and the path must be compared and shipped whole.
const (
	OpCreate      Op = "create"
	OpMkdir       Op = "mkdir"
	OpMknod       Op = "mknod"
	OpSymlink     Op = "symlink"
	OpLink        Op = "link"
	OpUnlink      Op = "unlink"
	OpRmdir       Op = "rmdir"
	OpRename      Op = "rename"
	OpSetattr     Op = "setattr"
	OpSetxattr    Op = "setxattr"
	OpRemovexattr Op = "removexattr"
	OpWrite       Op = "write"
	OpTruncate    Op = "truncate"
	OpFallocate   Op = "fallocate"
	OpResync      Op = "resync"
)

// Range is a byte range [offset, length]; it marshals as [off,len].
type Range [2]int64

// End is the first offset past the range.
func (r Range) End() int64 { return r[0] + r[1] }

// Record is one journaled mutation. Paths are relative to the volume root,
// slash-separated, without a leading slash ("" is the root itself).
type Record struct {
	Seq     uint64    `json:"seq"`
	Epoch   uint64    `json:"epoch"`
	Time    time.Time `json:"time"`
	Op      Op        `json:"op"`
	Path    string    `json:"path"`
	NewPath string    `json:"new_path,omitempty"`
	// Ino is the backing inode number: the file's identity across renames
	// and hardlinks.
	Ino    uint64  `json:"ino,omitempty"`
	Ranges []Range `json:"ranges,omitempty"`
	// Open marks the first write record of a write session: more writes to
	// the file may follow before a closing record names their ranges.
	Open bool `json:"open,omitempty"`
	// Whole says the journal cannot vouch for which ranges changed: the
	// whole file must be shipped.
	Whole bool `json:"whole,omitempty"`

	Mode   *uint32    `json:"mode,omitempty"`
	UID    *uint32    `json:"uid,omitempty"`
	GID    *uint32    `json:"gid,omitempty"`
	Size   *uint64    `json:"size,omitempty"`
	Atime  *time.Time `json:"atime,omitempty"`
	Mtime  *time.Time `json:"mtime,omitempty"`
	Rdev   uint32     `json:"rdev,omitempty"`
	Target string     `json:"target,omitempty"`
	Xattr  string     `json:"xattr,omitempty"`
	Value  []byte     `json:"value,omitempty"`
	// Flags carries rename flags (RENAME_NOREPLACE, RENAME_EXCHANGE),
	// setxattr flags or the fallocate mode.
	Flags uint32 `json:"flags,omitempty"`
}

// Paths returns the paths the record touches.
func (r *Record) Paths() []string {
	if r.NewPath != "" {
		return []string{r.Path, r.NewPath}
	}
	return []string{r.Path}
}

func (r *Record) String() string {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Sprintf("record %d: %v", r.Seq, err)
	}
	return string(b)
}

// MaxRanges bounds the ranges kept per file. Past it the nearest ranges are
// merged: a little more data is shipped, memory stays bounded.
const MaxRanges = 1024

// AddRange adds [off, off+n) to a sorted, non-overlapping range list,
// merging touching and overlapping ranges, and returns the new list.
func AddRange(rs []Range, off, n int64) []Range {
	if n <= 0 {
		return rs
	}
	end := off + n
	// First range whose end reaches off (touching counts).
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() >= off })
	j := i
	for j < len(rs) && rs[j][0] <= end {
		if rs[j][0] < off {
			off = rs[j][0]
		}
		if rs[j].End() > end {
			end = rs[j].End()
		}
		j++
	}
	merged := Range{off, end - off}
	switch {
	case i == j:
		rs = append(rs, Range{})
		copy(rs[i+1:], rs[i:])
		rs[i] = merged
	default:
		rs[i] = merged
		rs = append(rs[:i+1], rs[j:]...)
	}
	for len(rs) > MaxRanges {
		rs = mergeClosest(rs)
	}
	return rs
}

// mergeClosest merges the two neighbouring ranges with the smallest gap.
func mergeClosest(rs []Range) []Range {
	best, gap := 0, int64(-1)
	for k := 0; k+1 < len(rs); k++ {
		if g := rs[k+1][0] - rs[k].End(); gap < 0 || g < gap {
			best, gap = k, g
		}
	}
	rs[best] = Range{rs[best][0], rs[best+1].End() - rs[best][0]}
	return append(rs[:best+1], rs[best+2:]...)
}

// MergeRanges adds every range of add into rs.
func MergeRanges(rs, add []Range) []Range {
	for _, r := range add {
		rs = AddRange(rs, r[0], r[1])
	}
	return rs
}

// ClipRanges drops everything at or past size.
func ClipRanges(rs []Range, size int64) []Range {
	out := rs[:0]
	for _, r := range rs {
		if r[0] >= size {
			break
		}
		if r.End() > size {
			r[1] = size - r[0]
		}
		out = append(out, r)
	}
	return out
}
