package failover

import (
	"slices"

	gsync "github.com/georep/georep/sync"
)

// History is the list of epochs a node's data descends from, oldest
// first: the records of each epoch have seqs after its Start, up to the
// next epoch's Start.
type History []gsync.EpochStart

// at returns the step whose records include seq (seq ≥ 1).
func (h History) at(seq uint64) (gsync.EpochStart, bool) {
	var out gsync.EpochStart
	found := false
	for _, e := range h {
		if e.Start >= seq {
			break
		}
		out, found = e, true
	}
	return out, found
}

// EpochAt is the epoch of the record with seq (0: none, or seq 0).
func (h History) EpochAt(seq uint64) uint64 {
	if seq == 0 {
		return 0
	}
	e, _ := h.at(seq)
	return e.Epoch
}

// With returns the history extended by a new epoch starting after seq.
func (h History) With(epoch, start uint64, primary string) History {
	out := slices.Clone(h)
	for len(out) > 0 && out[len(out)-1].Start > start {
		out = out[:len(out)-1] // steps past the start are not this history's
	}
	return append(out, gsync.EpochStart{Epoch: epoch, Start: start, Primary: primary})
}

// Fork is the last seq on which two positions agree: seq a in history ha
// and seq b in hb hold the same records up to it (the same epoch of the
// same primary made each of them).
func Fork(ha History, a uint64, hb History, b uint64) uint64 {
	limit := min(a, b)
	if limit == 0 {
		return 0
	}
	// The step covering a seq changes only just after a Start.
	points := []uint64{1}
	for _, h := range [2]History{ha, hb} {
		for _, e := range h {
			if e.Start < limit {
				points = append(points, e.Start+1)
			}
		}
	}
	slices.Sort(points)
	for _, x := range slices.Compact(points) {
		ea, oka := ha.at(x)
		eb, okb := hb.at(x)
		if !oka || !okb || ea.Epoch != eb.Epoch || ea.Primary != eb.Primary {
			return x - 1
		}
	}
	return limit
}

// Ahead reports by how many records position (hq, q) extends position
// (hp, p): 0 unless q holds every record p holds and more.
func Ahead(hp History, p uint64, hq History, q uint64) uint64 {
	if q <= p || Fork(hp, p, hq, q) != p {
		return 0
	}
	return q - p
}
