package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkVerifyPassword is one password check: it bounds how fast
// anyone can guess (checks run one at a time).
func BenchmarkVerifyPassword(b *testing.B) {
	h, err := HashPassword([]byte(testPassword))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := VerifyPassword(h, []byte("wrong-password")); ok {
			b.Fatal("matched")
		}
	}
}

// benchGet serves path from a fixture's handler in-process.
func benchGet(b *testing.B, path string) {
	f := newFixture(b, true)
	h := f.srv.Handler()
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 {
			b.Fatalf("GET %s: %d", path, rec.Code)
		}
		size = rec.Body.Len()
		io.Copy(io.Discard, rec.Body)
	}
	b.ReportMetric(float64(size), "bytes/op-body")
}

func BenchmarkStatusPage(b *testing.B)    { benchGet(b, "/") }
func BenchmarkMetricsScrape(b *testing.B) { benchGet(b, "/metrics") }
