package cache_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/brokerfs/brokerfs/cache"
)

// The read path of a decoded column: a hit serves the file; a miss builds the entry once.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := cache.Open(cache.Options{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		log.Printf("cache disabled: %v", err) // and serve without it
		return
	}
	defer s.Close()

	key := "file:/data/run.msgpack:size=123:mtime=456:ino=789/primary"
	e, err := s.Lookup(key)
	if errors.Is(err, cache.ErrMiss) {
		b, err := s.Build(key)
		if err != nil {
			log.Fatal(err)
		}
		defer b.Abort() // a no-op once committed
		data := []byte("\x93NUMPY...")
		f, err := b.Create("det.npy")
		if err != nil {
			log.Fatal(err)
		}
		if err := b.Reserve(int64(len(data))); err != nil {
			log.Fatal(err) // ErrFull: serve without caching
		}
		f.Write(data)
		if e, err = b.Commit([]byte(`{"rows": 1}`)); err != nil {
			log.Fatal(err)
		}
	}
	f, err := e.Open("det.npy") // ErrMiss here too when the file was damaged: rebuild
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	fmt.Printf("%q %s\n", got, e.Meta)
	// Output: "\x93NUMPY..." {"rows": 1}
}
