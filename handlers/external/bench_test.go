package external

import (
	"context"
	"testing"
)

// BenchmarkRead reads one small frame through the Python test handler: exec mode pays a
// python3+numpy start per call, serve mode one start per resource.
//
//	go test -run XXX -bench . ./handlers/external/
func BenchmarkRead(b *testing.B) {
	path, _ := stack(b)
	for _, serve := range []bool{false, true} {
		b.Run(map[bool]string{false: "exec", true: "serve"}[serve], func(b *testing.B) {
			h := New(script(), Options{Spec: "TESTSPEC", Serve: serve})
			hh, err := h(context.Background(), path, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer hh.Close()
			for i := 0; i < b.N; i++ {
				if _, err := hh.Read(context.Background(), map[string]any{"index": int64(i % 4)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
