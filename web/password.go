package web

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/argon2"
)

// HashFile is the takeover password's hash in the state dir.
const HashFile = "takeover.hash"

// Password limits: a takeover password guards promotion of a replica, so
// a short one is refused; a long one only costs hashing time.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// Argon2id parameters for new hashes (RFC 9106's second recommendation,
// with fewer passes: ≈100 ms on one core of a small machine).
const (
	argonTime    = 2
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
	saltLen      = 16
)

var errBadHash = errors.New("not an argon2id password hash")

// HashPassword returns pw's argon2id hash in the PHC string format
// ($argon2id$v=19$m=…,t=…,p=…$salt$hash), with a random salt.
func HashPassword(pw []byte) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey(pw, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func checkPassword(pw []byte) error {
	switch {
	case len(pw) < MinPasswordLen:
		return fmt.Errorf("the takeover password is too short: at least %d characters", MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("the takeover password is too long: at most %d bytes", MaxPasswordLen)
	case bytes.ContainsAny(pw, "\x00\n\r"):
		return errors.New("the takeover password holds a NUL or a line break")
	}
	return nil
}

// VerifyPassword reports whether pw matches encoded (HashPassword's
// format), comparing in constant time. An unreadable hash is an error.
func VerifyPassword(encoded string, pw []byte) (bool, error) {
	h, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxPasswordLen {
		return false, nil
	}
	got := argon2.IDKey(pw, h.salt, h.t, h.m, h.p, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1, nil
}

type argonHash struct {
	m, t      uint32
	p         uint8
	salt, key []byte
}

// parseHash reads HashPassword's format, with bounds that keep a
// tampered file from making every check take minutes or gigabytes.
func parseHash(encoded string) (*argonHash, error) {
	var m, t uint32
	var p uint8
	var v int
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return nil, fmt.Errorf("%w: version %q", errBadHash, parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return nil, fmt.Errorf("%w: parameters %q", errBadHash, parts[3])
	}
	if p < 1 || p > 16 || m < 8*uint32(p) || m > 1<<20 || t < 1 || t > 16 {
		return nil, fmt.Errorf("%w: parameters out of range %q", errBadHash, parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return nil, fmt.Errorf("%w: salt", errBadHash)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return nil, fmt.Errorf("%w: key", errBadHash)
	}
	return &argonHash{m: m, t: t, p: p, salt: salt, key: key}, nil
}

// ReadPasswordFile reads a takeover password from a file the operator
// keeps (its first line, without the line break).
func ReadPasswordFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read takeover password file: %w", err)
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSuffix(b, []byte("\r"))
	if err := checkPassword(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// SetPassword stores pw's hash (only the hash) in the state dir,
// replacing any earlier one; the file is replaced atomically and synced.
func SetPassword(stateDir string, pw []byte) error {
	h, err := HashPassword(pw)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(stateDir, HashFile+".tmp*")
	if err != nil {
		return fmt.Errorf("store takeover password hash: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(h + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("store takeover password hash: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store takeover password hash: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store takeover password hash: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(stateDir, HashFile)); err != nil {
		return fmt.Errorf("store takeover password hash: %w", err)
	}
	if d, err := os.Open(stateDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// LoadHash reads the stored hash; "" when no password was set.
func LoadHash(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, HashFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read takeover password hash: %w", err)
	}
	h := strings.TrimSpace(string(b))
	if _, err := parseHash(h); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(stateDir, HashFile), err)
	}
	return h, nil
}
