package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHashPassword(t *testing.T) {
	pw := []byte("correct horse battery")
	h1, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Errorf("hash %q: not argon2id in PHC format", h1)
	}
	if h1 == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if strings.Contains(h1, string(pw)) {
		t.Error("the hash holds the password")
	}
	for _, h := range []string{h1, h2} {
		if ok, err := VerifyPassword(h, pw); !ok || err != nil {
			t.Errorf("right password: %v %v", ok, err)
		}
		for _, wrong := range []string{"", "correct horse batter", "correct horse battery ", "Correct horse battery", strings.Repeat("x", 5000)} {
			if ok, err := VerifyPassword(h, []byte(wrong)); ok || err != nil {
				t.Errorf("wrong password %.20q: %v %v", wrong, ok, err)
			}
		}
	}
	for _, short := range []string{"", "1234567"} {
		if _, err := HashPassword([]byte(short)); err == nil {
			t.Errorf("password %q accepted", short)
		}
	}
	if _, err := HashPassword([]byte("line\nbreak here")); err == nil {
		t.Error("a password with a line break accepted")
	}
}

// TestVerifyPasswordRefusesBadHashes: a damaged or tampered hash file is
// an error, never a match, and cannot ask for absurd work.
func TestVerifyPasswordRefusesBadHashes(t *testing.T) {
	good, err := HashPassword([]byte("password1"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for name, h := range map[string]string{
		"empty":        "",
		"plain text":   "password1",
		"bcrypt":       "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":      with(1, "argon2i"),
		"version":      with(2, "v=16"),
		"huge memory":  with(3, "m=4194304,t=2,p=2"),
		"many passes":  with(3, "m=65536,t=1000,p=2"),
		"no threads":   with(3, "m=65536,t=2,p=0"),
		"garbage":      with(3, "m=x"),
		"bad salt":     with(4, "!!!"),
		"short key":    with(5, "AAAA"),
		"extra fields": good + "$x",
	} {
		if ok, err := VerifyPassword(h, []byte("password1")); ok || err == nil {
			t.Errorf("%s: %v %v, want an error", name, ok, err)
		}
	}
}

func TestPasswordFileAndStore(t *testing.T) {
	dir := t.TempDir()
	if h, err := LoadHash(dir); h != "" || err != nil {
		t.Fatalf("no password set: %q %v", h, err)
	}
	pf := filepath.Join(dir, "pw")
	if err := os.WriteFile(pf, []byte("s3cret-takeover\nsecond line ignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := ReadPasswordFile(pf)
	if err != nil || string(pw) != "s3cret-takeover" {
		t.Fatalf("ReadPasswordFile: %q %v", pw, err)
	}
	if err := SetPassword(dir, pw); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, HashFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("hash file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(filepath.Join(dir, HashFile))
	if strings.Contains(string(raw), "s3cret") {
		t.Error("the stored hash file holds the password")
	}
	h, err := LoadHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := VerifyPassword(h, []byte("s3cret-takeover")); !ok {
		t.Error("stored hash does not match the password")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("state dir holds %d entries, want the hash and the password file (no temporary left)", len(ents))
	}
	if err := os.WriteFile(pf, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPasswordFile(pf); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short password file: %v", err)
	}
	if _, err := ReadPasswordFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing password file accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, HashFile), []byte("tampered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHash(dir); err == nil {
		t.Error("a tampered hash file loaded")
	}
}
