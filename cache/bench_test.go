package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLookupOpen is the read path of a warm cache: Lookup of a committed entry and Open of one
// of its files (which re-checks its head and tail CRC).
func BenchmarkLookupOpen(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	files := map[string]int{"time.npy": 80000, "x.npy": 1 << 20, "y.npy": 1 << 20}
	mustBuild(b, s, "run/primary", files)
	b.ReportAllocs()
	for b.Loop() {
		e, err := s.Lookup("run/primary")
		if err != nil {
			b.Fatal(err)
		}
		f, err := e.Open("x.npy")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkOpenBaseline is what a reader of a plain local file pays for the same open: open, fstat,
// one 4 KiB read, close. BenchmarkLookupOpen adds the stats of the manifest and of each file of the
// entry, a second 4 KiB read and the CRCs.
func BenchmarkOpenBaseline(b *testing.B) {
	p := filepath.Join(b.TempDir(), "x.npy")
	if err := os.WriteFile(p, content("k", "x", 1<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Stat(); err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReadAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

const bigEntry = 100 << 20

// BenchmarkCommit100MB writes a 100 MB entry in 1 MiB chunks (reserving before each) and commits
// it. Compare with BenchmarkWriteFile100MB, the same bytes by os.WriteFile in the same run: the
// difference is the cost of the cache (reservations, fsync, checksums, manifest, index).
func BenchmarkCommit100MB(b *testing.B) {
	benchCommit(b, Options{Dir: b.TempDir(), MaxBytes: 3 * bigEntry})
}

// BenchmarkCommit100MBTemporary is the same for a Temporary Store (--no-cache), which does not
// fsync: its directory does not outlive it.
func BenchmarkCommit100MBTemporary(b *testing.B) {
	benchCommit(b, Options{Dir: b.TempDir() + "/tmp", MaxBytes: 3 * bigEntry, Temporary: true})
}

func benchCommit(b *testing.B, o Options) {
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := content("big", "x", bigEntry)
	b.SetBytes(bigEntry)
	i := 0
	for b.Loop() {
		i++
		bl, err := s.Build("big")
		if err != nil {
			b.Fatal(err)
		}
		f, _ := bl.Create("x.npy")
		for off := 0; off < bigEntry; off += 1 << 20 {
			if err := bl.Reserve(1 << 20); err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data[off : off+1<<20]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := bl.Commit(nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Remove("big"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkWriteFile100MB(b *testing.B) {
	dir := b.TempDir()
	data := content("big", "x", bigEntry)
	b.SetBytes(bigEntry)
	for b.Loop() {
		p := filepath.Join(dir, "x.npy")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(p)
		b.StartTimer()
	}
}

// BenchmarkWriteFileSync100MB is os.WriteFile plus the fsync that makes the bytes durable, which
// Commit must do.
func BenchmarkWriteFileSync100MB(b *testing.B) {
	dir := b.TempDir()
	data := content("big", "x", bigEntry)
	b.SetBytes(bigEntry)
	for b.Loop() {
		p := filepath.Join(dir, "x.npy")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.StopTimer()
		os.Remove(p)
		b.StartTimer()
	}
}

// BenchmarkCommitManyFiles commits an entry of 24 files of 2 MiB: a stream's columns (each
// field's values and timestamps, time, seq_num), the shape of a first read of a million-event
// scalar stream. The files' fsyncs dominate.
func BenchmarkCommitManyFiles(b *testing.B) {
	const files, size = 24, 2 << 20
	s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 4 * files * size})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := content("many", "x", size)
	b.SetBytes(files * size)
	for b.Loop() {
		bl, err := s.Build("many")
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.Reserve(files * size); err != nil {
			b.Fatal(err)
		}
		for i := range files {
			f, err := bl.Create(fmt.Sprintf("c%d.npy", i))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := bl.Commit(nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Remove("many"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
