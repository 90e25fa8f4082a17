package web

import "testing"

// FuzzParseHash: the stored hash is read back from a file anyone with
// access to the state dir could damage; any content is an error or a
// hash within the bounds, never a panic.
func FuzzParseHash(f *testing.F) {
	good, err := HashPassword([]byte("password1"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "$", "$argon2id$v=19$m=65536,t=2,p=2$$", "$argon2id$v=19$m=1,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4294967295,t=4294967295,p=255$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHash(s)
		if err != nil {
			return
		}
		if h.p < 1 || h.p > 16 || h.m > 1<<20 || h.m < 8*uint32(h.p) || h.t < 1 || h.t > 16 || len(h.salt) < 8 || len(h.key) < 16 {
			t.Fatalf("out-of-bounds hash accepted: %+v", h)
		}
	})
}
