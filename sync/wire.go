package sync

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/georep/georep/journal"
)

// The wire protocol. A connection carries frames:
//
//	u32 length (of type and payload, big endian) | u8 type | payload
//
// Control frames carry one JSON object; data frames are binary (Data:
// u64 offset then the bytes; Hole and Keep: u64 offset, u64 length).
// Everything a peer sends is untrusted: every frame is bounded in size,
// every decoder checks what it decodes (paths, ops, ranges, sizes), and a
// frame that fails a check ends the connection with a one-line error.

// Proto is the protocol version spoken.
const Proto = 2

// MaxFrame bounds a frame's type and payload.
const MaxFrame = 4 << 20

// dataChunk is the most file data one Data frame carries.
const dataChunk = 1 << 20

// maxOffset bounds file offsets and sizes from a peer (2^62 is far past
// any file system's limit and keeps offset+length from overflowing).
const maxOffset = 1 << 62

// FrameType says what a frame holds.
type FrameType uint8

// The frame types.
const (
	THello    FrameType = iota + 1 // Hello, client to server
	TWelcome                       // Welcome, server to client
	TBatch                         // BatchBegin
	TRecord                        // a journal record
	TFile                          // FileHeader: file data follows
	TData                          // binary: offset, bytes
	THole                          // binary: offset, length
	TKeep                          // binary: offset, length (keep the old bytes)
	TFileEnd                       // FileEnd
	TBatchEnd                      // BatchEnd
	TAck                           // Ack, server to client
	TTree                          // TreeBegin
	TDir                           // Dir: one directory's entries
	TWants                         // Wants, server to client
	TDirEnd                        // DirEnd
	TTreeEnd                       // TreeEnd
	TError                         // ErrorMsg
	TVerify                        // VerifyRequest
	TManifest                      // Manifest: entries of the server's tree
	TPing                          // keeps an idle connection alive
	TControl                       // a failover message (JSON, see package failover)
	tLast
)

var frameNames = [...]string{"", "hello", "welcome", "batch", "record", "file", "data", "hole", "keep",
	"file-end", "batch-end", "ack", "tree", "dir", "wants", "dir-end", "tree-end", "error", "verify", "manifest", "ping", "control"}

func (t FrameType) String() string {
	if t > 0 && t < tLast {
		return frameNames[t]
	}
	return fmt.Sprintf("frame-type-%d", uint8(t))
}

// ErrProtocol is wrapped by every refusal of what a peer sent.
var ErrProtocol = errors.New("protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// Frame is one received frame. Payload is valid until the next read.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// ReadFrame reads one frame, refusing oversized and unknown ones.
func ReadFrame(r io.Reader, buf []byte) (Frame, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	t := FrameType(hdr[4])
	if n < 1 || n > MaxFrame {
		return Frame{}, buf, protoErr("frame of %d bytes (limit %d)", n, MaxFrame)
	}
	if t == 0 || t >= tLast {
		return Frame{}, buf, protoErr("unknown frame type %d", uint8(t))
	}
	if cap(buf) < int(n-1) {
		buf = make([]byte, n-1)
	}
	buf = buf[:n-1]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Frame{}, buf, fmt.Errorf("read %s frame: %w", t, noEOF(err))
	}
	return Frame{Type: t, Payload: buf}, buf, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendFrame appends a frame of type t with payload to b.
func AppendFrame(b []byte, t FrameType, payload ...[]byte) []byte {
	n := 1
	for _, p := range payload {
		n += len(p)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, byte(t))
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

// Conn is a framed connection.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	buf  []byte
	out  []byte
	idle time.Duration
}

// NewConn frames c. Reads and writes fail after idle without progress.
func NewConn(c net.Conn, idle time.Duration) *Conn {
	return &Conn{c: c, r: bufio.NewReaderSize(c, 256<<10), w: bufio.NewWriterSize(c, 256<<10), idle: idle}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Read reads the next frame.
func (c *Conn) Read() (Frame, error) {
	if c.idle > 0 {
		c.c.SetReadDeadline(time.Now().Add(c.idle))
	}
	f, buf, err := ReadFrame(c.r, c.buf)
	c.buf = buf
	return f, err
}

// WaitGone waits while the session is idle until the peer closes the
// connection, or sends anything (an idle peer must not), or ctx ends
// (then it returns nil). It only peeks: nothing is consumed, so the next
// Read is unaffected. No Read may run meanwhile; writes may.
func (c *Conn) WaitGone(ctx context.Context) error {
	c.c.SetReadDeadline(time.Time{})
	// Registered after the deadline is cleared, so a context that has
	// already ended still interrupts the peek below.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.c.SetReadDeadline(time.Now())
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		c.c.SetReadDeadline(time.Time{})
	}()
	for {
		_, err := c.r.Peek(1)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			return protoErr("the peer sent data while the session was idle")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		return err
	}
}

// Expect reads the next frame and decodes it as JSON of type t into v.
// An Error frame from the peer becomes an error.
func (c *Conn) Expect(t FrameType, v any) error {
	f, err := c.Read()
	if err != nil {
		return err
	}
	if f.Type == TError && t != TError {
		var e ErrorMsg
		if err := DecodeJSON(f, &e); err != nil {
			return err
		}
		return fmt.Errorf("peer: %s", e.Msg)
	}
	if f.Type != t {
		return protoErr("got a %s frame, want %s", f.Type, t)
	}
	return DecodeJSON(f, v)
}

// Send writes a JSON frame (buffered; Flush sends).
func (c *Conn) Send(t FrameType, v any) error {
	js, err := encodeJSON(t, v)
	if err != nil {
		return err
	}
	return c.write(t, js)
}

// encodeJSON encodes the payload of a control frame.
func encodeJSON(t FrameType, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s frame: %w", t, err)
	}
	if len(js)+1 > MaxFrame {
		return nil, fmt.Errorf("%s frame of %d bytes is over the limit", t, len(js)+1)
	}
	return js, nil
}

// SendRange writes a Hole or Keep frame.
func (c *Conn) SendRange(t FrameType, off, n int64) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(off))
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return c.write(t, b[:])
}

// SendData writes a Data frame.
func (c *Conn) SendData(off int64, data []byte) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(off))
	return c.write(TData, b[:], data)
}

func (c *Conn) write(t FrameType, payload ...[]byte) error {
	if c.idle > 0 {
		c.c.SetWriteDeadline(time.Now().Add(c.idle))
	}
	c.out = AppendFrame(c.out[:0], t, payload...)
	if _, err := c.w.Write(c.out); err != nil {
		return fmt.Errorf("send %s frame: %w", t, err)
	}
	return nil
}

// Raw writes bytes as they are (tests of malformed input).
func (c *Conn) Raw(b []byte) error {
	_, err := c.w.Write(b)
	return err
}

// Flush sends what is buffered.
func (c *Conn) Flush() error {
	if c.idle > 0 {
		c.c.SetWriteDeadline(time.Now().Add(c.idle))
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// DecodeJSON decodes a control frame's payload into v and checks it when
// v can check itself (check here, Check in the failover package).
func DecodeJSON(f Frame, v any) error {
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return protoErr("bad %s frame: %v", f.Type, err)
	}
	var err error
	switch c := v.(type) {
	case interface{ check() error }:
		err = c.check()
	case interface{ Check() error }:
		err = c.Check()
	}
	if err != nil {
		return fmt.Errorf("%s frame: %w", f.Type, err)
	}
	return nil
}

// DecodeData decodes a Data frame.
func DecodeData(f Frame) (off int64, data []byte, err error) {
	if f.Type != TData || len(f.Payload) < 8 {
		return 0, nil, protoErr("bad data frame")
	}
	o := binary.BigEndian.Uint64(f.Payload)
	data = f.Payload[8:]
	if o > maxOffset || o+uint64(len(data)) > maxOffset {
		return 0, nil, protoErr("data at offset %d is out of range", o)
	}
	return int64(o), data, nil
}

// DecodeRange decodes a Hole or Keep frame.
func DecodeRange(f Frame) (off, n int64, err error) {
	if (f.Type != THole && f.Type != TKeep) || len(f.Payload) != 16 {
		return 0, 0, protoErr("bad %s frame", f.Type)
	}
	o, l := binary.BigEndian.Uint64(f.Payload), binary.BigEndian.Uint64(f.Payload[8:])
	if o > maxOffset || l > maxOffset || o+l > maxOffset {
		return 0, 0, protoErr("%s [%d, +%d) is out of range", f.Type, o, l)
	}
	return int64(o), int64(l), nil
}

// Purposes of a connection. Replicate and verify are served here; the
// others are the failover package's (Engine.Handle).
const (
	PurposeReplicate = "replicate"
	PurposeVerify    = "verify"
	PurposeQuery     = "query"   // a node's claim and view, for failover and status
	PurposeCommit    = "commit"  // a failback commit, asked of the current primary
	PurposeResolve   = "resolve" // the outcome of a commit whose answer was lost
	PurposeKick      = "kick"    // ship to the asking secondary now
)

var purposes = map[string]bool{PurposeReplicate: true, PurposeVerify: true, PurposeQuery: true,
	PurposeCommit: true, PurposeResolve: true, PurposeKick: true}

// Hello opens a connection: who the client is, what it wants, and its
// claim (role, epoch, where its data stands).
type Hello struct {
	Proto   int    `json:"proto"`
	Purpose string `json:"purpose"`
	Node    string `json:"node"`
	Volume  string `json:"volume"`
	Claim   *Claim `json:"claim,omitempty"`
}

func (h *Hello) check() error {
	if !purposes[h.Purpose] {
		return protoErr("unknown purpose %q", h.Purpose)
	}
	if len(h.Node) > 64 || len(h.Volume) > 64 {
		return protoErr("over-long name")
	}
	if h.Claim == nil {
		return protoErr("hello without a claim")
	}
	return h.Claim.check()
}

// Welcome answers a Hello: the server's claim and, for replication, where
// its replica stands.
type Welcome struct {
	Proto  int    `json:"proto"`
	Volume string `json:"volume"`
	Claim  *Claim `json:"claim,omitempty"`
	// Refused says why the server will not serve the purpose (a primary it
	// does not follow, a stale epoch); the claim tells the client more.
	Refused string `json:"refused,omitempty"`
	// Cursor is the last seq the replica applied durably (in the history
	// of the claim).
	Cursor uint64 `json:"cursor"`
	// Full asks for a full tree sync: a new or unclean replica.
	Full bool `json:"full,omitempty"`
	// Repair lists paths the replica knows differ (from an earlier
	// batch); the primary compares and ships them.
	Repair []string `json:"repair,omitempty"`
	// Unsettled: a comparison was interrupted, so paths beyond Repair may
	// hold a state newer than the cursor; the primary compares every path
	// changed since the cursor too.
	Unsettled bool `json:"unsettled,omitempty"`
}

func (w *Welcome) check() error {
	if len(w.Refused) > 4096 {
		return protoErr("over-long refusal")
	}
	if w.Claim != nil {
		if err := w.Claim.check(); err != nil {
			return err
		}
	}
	return checkPaths(w.Repair)
}

// Roles of a node.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
	RoleFenced    = "fenced"
)

// EpochStart is one step of a history: the records of Epoch, made by
// Primary (a node ID), have seqs after Start.
type EpochStart struct {
	Epoch   uint64 `json:"epoch"`
	Start   uint64 `json:"start"`
	Primary string `json:"primary"`
}

// Claim is what a node says of itself in every handshake: its role, the
// highest epoch it knows and that epoch's primary, and where its data
// stands: the last seq it holds (Seq) in the history of epochs that led
// to it.
type Claim struct {
	Name    string       `json:"name"`
	Role    string       `json:"role"`
	Epoch   uint64       `json:"epoch"`
	Primary string       `json:"primary,omitempty"`
	History []EpochStart `json:"history,omitempty"`
	Seq     uint64       `json:"seq"`
	// Since is when the node took its role.
	Since time.Time `json:"since,omitzero"`
}

// CheckClaim checks a claim from a peer.
func CheckClaim(c *Claim) error { return c.check() }

// maxEpoch bounds the epochs a peer may claim: far past any number of
// promotions, and no promotion can overflow it.
const maxEpoch = 1 << 62

// maxHistory bounds the epochs a claim lists.
const maxHistory = 100_000

func (c *Claim) check() error {
	switch c.Role {
	case RolePrimary, RoleSecondary, RoleFenced:
	default:
		return protoErr("unknown role %q", c.Role)
	}
	if len(c.Name) > 64 {
		return protoErr("over-long name")
	}
	if c.Epoch > maxEpoch || c.Seq > maxOffset {
		return protoErr("epoch %d, seq %d out of range", c.Epoch, c.Seq)
	}
	if err := checkNodeID(c.Primary, true); err != nil {
		return err
	}
	if len(c.History) > maxHistory {
		return protoErr("history of %d epochs", len(c.History))
	}
	for i, h := range c.History {
		if err := checkNodeID(h.Primary, false); err != nil {
			return err
		}
		if i > 0 && (h.Epoch <= c.History[i-1].Epoch || h.Start < c.History[i-1].Start) {
			return protoErr("history out of order at epoch %d", h.Epoch)
		}
		if h.Epoch > c.Epoch {
			return protoErr("history names epoch %d past the claimed %d", h.Epoch, c.Epoch)
		}
	}
	return nil
}

// checkNodeID checks a node ID from a peer: 64 lowercase hex digits.
func checkNodeID(id string, empty bool) error {
	if id == "" && empty {
		return nil
	}
	if len(id) != 64 {
		return protoErr("bad node ID %q", id)
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return protoErr("bad node ID %q", id)
		}
	}
	return nil
}

// ErrorMsg tells the peer why the connection ends.
type ErrorMsg struct {
	Msg string `json:"msg"`
}

// BatchBegin starts a batch of records.
type BatchBegin struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	// Trim is the seq up to which every replica of the primary has
	// applied: a replica drops its received log up to there.
	Trim uint64 `json:"trim,omitempty"`
}

func (b *BatchBegin) check() error {
	if b.First > b.Last || b.Last-b.First > 1<<32 {
		return protoErr("batch seqs %d..%d", b.First, b.Last)
	}
	return nil
}

// FileHeader starts the data of the file at Path. In a batch the ranges
// that follow are written into the file in place; in a tree sync they
// describe the whole new file (Data, Hole, Keep), built aside and renamed
// over Path.
type FileHeader struct {
	Path string `json:"path"`
}

func (h *FileHeader) check() error { return checkPath(h.Path) }

// FileEnd ends a file's data with its size and times.
type FileEnd struct {
	Size  int64 `json:"size"`
	Mtime int64 `json:"mtime"` // ns since the epoch
	// Missing: the file could not be read on the sender (gone since);
	// nothing was sent and the receiver keeps what it has.
	Missing bool `json:"missing,omitempty"`
}

func (e *FileEnd) check() error {
	if e.Size < 0 || e.Size > maxOffset {
		return protoErr("file size %d", e.Size)
	}
	return nil
}

// Fixup sets the mtime of a path the batch touched, as the sender has it.
type Fixup struct {
	Path  string `json:"path"`
	Mtime int64  `json:"mtime"`
}

// BatchEnd ends a batch.
type BatchEnd struct {
	Seq    uint64  `json:"seq"`
	Fixups []Fixup `json:"fixups,omitempty"`
}

func (b *BatchEnd) check() error {
	for _, f := range b.Fixups {
		if err := checkPath(f.Path); err != nil {
			return err
		}
	}
	return nil
}

// Ping keeps an idle session alive. Seq, when set, is the primary's
// journal head, sent only when the peer has acknowledged it with every
// write session cut: the replica is in line with the primary at that
// moment (ReplicaState.InLine). An empty ping ({}) says nothing more.
type Ping struct {
	Seq uint64 `json:"seq,omitempty"`
}

// Ack acknowledges a batch (or a tree sync): the replica's new cursor,
// and paths it found diverged, which the primary compares and ships.
type Ack struct {
	Seq    uint64   `json:"seq"`
	Repair []string `json:"repair,omitempty"`
	Error  string   `json:"error,omitempty"`
}

func (a *Ack) check() error { return checkPaths(a.Repair) }

// TreeBegin starts a tree sync that ends at Seq: the receiver's cursor
// once it acknowledges the tree's end.
type TreeBegin struct {
	Seq uint64 `json:"seq"`
	// Full: the tree sync makes a whole new copy; what the replica
	// received before it no longer describes it.
	Full bool `json:"full,omitempty"`
	// Checksum compares files of equal size and mtime by content too.
	Checksum bool `json:"checksum,omitempty"`
}

// Entry describes one directory entry.
type Entry struct {
	Name   string            `json:"name"`
	Mode   uint32            `json:"mode"` // type and permission bits
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   int64             `json:"size,omitempty"`
	Mtime  int64             `json:"mtime"`
	Ino    uint64            `json:"ino,omitempty"`
	Nlink  uint32            `json:"nlink,omitempty"`
	Target string            `json:"target,omitempty"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
}

// Type is the entry's file type bits.
func (e *Entry) Type() uint32 { return e.Mode & typeMask }

const typeMask = 0o170000

func (e *Entry) check(root bool) error {
	if err := checkName(e.Name); err != nil {
		return err
	}
	if root && e.Name == HiddenDir {
		return protoErr("entry %q is georep's own", e.Name)
	}
	switch e.Type() {
	case typeReg, typeDir, typeLnk, typeFifo, typeSock, typeChr, typeBlk:
	default:
		return protoErr("entry %q has file type %o", e.Name, e.Type())
	}
	if e.Size < 0 || e.Size > maxOffset {
		return protoErr("entry %q has size %d", e.Name, e.Size)
	}
	if len(e.Target) > maxPath || strings.IndexByte(e.Target, 0) >= 0 {
		return protoErr("entry %q has a bad link target", e.Name)
	}
	return checkXattrs(e.Xattrs)
}

// File types.
const (
	typeReg  = 0o100000
	typeDir  = 0o040000
	typeLnk  = 0o120000
	typeFifo = 0o010000
	typeSock = 0o140000
	typeChr  = 0o020000
	typeBlk  = 0o060000
)

// Dir lists the entries of the directory at Path (Self is the directory
// itself, without a name). Full: these are all its entries and the
// receiver removes any other. Gone lists names that must not exist. A
// missing Self means the directory does not exist at the sender: the
// receiver removes what it has at Path.
type Dir struct {
	Path    string  `json:"path"`
	Self    *Entry  `json:"self,omitempty"`
	Entries []Entry `json:"entries,omitempty"`
	Full    bool    `json:"full,omitempty"`
	// More: further Dir frames of the same directory follow.
	More bool     `json:"more,omitempty"`
	Gone []string `json:"gone,omitempty"`
}

func (d *Dir) check() error {
	if err := checkPath(d.Path); err != nil {
		return err
	}
	if d.Self != nil {
		if d.Self.Type() != typeDir {
			return protoErr("directory %q is not a directory", d.Path)
		}
		if err := checkXattrs(d.Self.Xattrs); err != nil {
			return err
		}
	}
	root := d.Path == ""
	for i := range d.Entries {
		if err := d.Entries[i].check(root); err != nil {
			return err
		}
	}
	for _, n := range d.Gone {
		if err := checkName(n); err != nil {
			return err
		}
		if root && n == HiddenDir {
			return protoErr("entry %q is georep's own", n)
		}
	}
	return nil
}

// Want asks for one file's data: Blocks are the SHA-256 hashes of the
// receiver's current blocks (blockSize bytes each), so only the blocks
// that differ travel.
type Want struct {
	Name   string   `json:"name"`
	Blocks [][]byte `json:"blocks,omitempty"`
}

// Wants answers a Dir: the files whose data the receiver needs.
type Wants struct {
	Files []Want `json:"files,omitempty"`
}

func (w *Wants) check() error {
	for _, f := range w.Files {
		if err := checkName(f.Name); err != nil {
			return err
		}
		for _, b := range f.Blocks {
			if len(b) != 32 {
				return protoErr("block hash of %d bytes", len(b))
			}
		}
	}
	return nil
}

// blockSize is the unit of delta transfer in a tree sync.
const blockSize = 128 << 10

// DirEnd ends a directory: its mtime, set after its entries changed.
type DirEnd struct {
	Path  string `json:"path"`
	Mtime int64  `json:"mtime"`
}

func (d *DirEnd) check() error { return checkPath(d.Path) }

// TreeEnd ends a tree sync.
type TreeEnd struct {
	Seq uint64 `json:"seq"`
	// Final: the replica is now a copy of the primary at Seq, which
	// becomes its cursor.
	Final bool `json:"final,omitempty"`
}

// VerifyRequest asks the server for its manifest.
type VerifyRequest struct{}

// Manifest is a chunk of a server's tree listing, in walk order; Last
// marks the final chunk.
type Manifest struct {
	Items []Item `json:"items,omitempty"`
	Last  bool   `json:"last,omitempty"`
}

// Item is one entry of a manifest.
type Item struct {
	Path   string            `json:"path"`
	Mode   uint32            `json:"mode"`
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   int64             `json:"size"`
	Mtime  int64             `json:"mtime"`
	Nlink  uint32            `json:"nlink,omitempty"`
	Target string            `json:"target,omitempty"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Hash   []byte            `json:"hash,omitempty"`
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
}

func (m *Manifest) check() error {
	for _, it := range m.Items {
		if err := checkPath(it.Path); err != nil {
			return err
		}
	}
	return nil
}

// HiddenDir is georep's own directory at the volume root (fs.HiddenDir):
// no peer may name anything in it.
const HiddenDir = ".georep"

// checkPath is CheckPath, refusing georep's own directory too.
func checkPath(p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	if p == HiddenDir || strings.HasPrefix(p, HiddenDir+"/") {
		return fmt.Errorf("%w: %q is georep's own", ErrBadPath, p)
	}
	return nil
}

func checkPaths(ps []string) error {
	for _, p := range ps {
		if err := checkPath(p); err != nil {
			return err
		}
	}
	return nil
}

func checkName(n string) error {
	if n == "" || strings.IndexByte(n, '/') >= 0 {
		return fmt.Errorf("%w: bad name %q", ErrBadPath, n)
	}
	return CheckPath(n)
}

func checkXattrs(x map[string][]byte) error {
	for k, v := range x {
		if k == "" || len(k) > maxName || strings.IndexByte(k, 0) >= 0 {
			return protoErr("bad xattr name %q", k)
		}
		if len(v) > 64<<10 {
			return protoErr("xattr %q of %d bytes", k, len(v))
		}
	}
	return nil
}

// wireRecord is what a record is on the wire: everything but what is
// local to the sender.
func wireRecord(r *journal.Record) *journal.Record {
	c := *r
	c.Open = false
	return &c
}

// checkRecord validates a record from a peer before anything applies it.
func checkRecord(r *journal.Record) error {
	if err := checkPath(r.Path); err != nil {
		return err
	}
	if r.Path == "" && r.Op != journal.OpSetattr && r.Op != journal.OpSetxattr && r.Op != journal.OpRemovexattr && r.Op != journal.OpResync {
		return protoErr("%s of the volume root", r.Op)
	}
	twoPaths := r.Op == journal.OpRename || r.Op == journal.OpLink
	switch {
	case twoPaths && r.NewPath == "":
		return protoErr("%s without a new path", r.Op)
	case !twoPaths && r.NewPath != "":
		return protoErr("%s with a new path", r.Op)
	case twoPaths:
		if err := checkPath(r.NewPath); err != nil {
			return err
		}
	}
	switch r.Op {
	case journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink, journal.OpLink,
		journal.OpUnlink, journal.OpRmdir, journal.OpSetattr, journal.OpSetxattr,
		journal.OpRemovexattr, journal.OpWrite, journal.OpTruncate, journal.OpResync:
	case journal.OpRename:
		if r.Flags&^uint32(renameNoReplace|renameExchange) != 0 {
			return protoErr("rename flags %#x", r.Flags)
		}
	case journal.OpFallocate:
		if r.Flags&^uint32(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0 {
			return protoErr("fallocate mode %#x", r.Flags)
		}
	default:
		return protoErr("op %q", r.Op)
	}
	if len(r.Ranges) > journal.MaxRanges {
		return protoErr("%d ranges", len(r.Ranges))
	}
	for _, rg := range r.Ranges {
		if rg[0] < 0 || rg[1] < 0 || rg[0] > maxOffset || rg[1] > maxOffset-rg[0] {
			return protoErr("range [%d, +%d)", rg[0], rg[1])
		}
	}
	if r.Size != nil && *r.Size > maxOffset {
		return protoErr("size %d", *r.Size)
	}
	if r.Op == journal.OpMknod && r.Mode != nil {
		switch *r.Mode & typeMask {
		case typeFifo, typeSock, typeChr, typeBlk, typeReg:
		default:
			return protoErr("mknod of file type %o", *r.Mode&typeMask)
		}
	}
	if len(r.Target) > maxPath || strings.IndexByte(r.Target, 0) >= 0 {
		return protoErr("bad symlink target")
	}
	if r.Op == journal.OpSymlink && r.Target == "" {
		return protoErr("symlink without a target")
	}
	if r.Op == journal.OpSetxattr || r.Op == journal.OpRemovexattr {
		if err := checkXattrs(map[string][]byte{r.Xattr: r.Value}); err != nil {
			return err
		}
	}
	return nil
}

// Rename and fallocate flags a record may carry.
const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// nsTime converts ns since the epoch to a time.
func nsTime(ns int64) time.Time { return time.Unix(0, ns) }
