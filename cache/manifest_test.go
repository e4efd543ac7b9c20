package cache

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleManifest() *manifest {
	return &manifest{
		Key: []byte("run\xff/primary"), Gen: "0123456789abcdef0123456789abcdef", Committed: 1234567890,
		Meta: []byte{0, 1, 2},
		Files: []fileRec{{Name: "a.npy", Size: 100, Ctime: 5, Ino: 7, Head: 1, Tail: 2},
			{Name: "time.npy", Size: 0}},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	data, err := encodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v, want %+v", got, m)
	}
	for i := range data {
		for _, bad := range [][]byte{data[:i], append(bytes.Clone(data[:i]), data[i+1:]...)} {
			if _, err := parseManifest(bad); err == nil {
				t.Fatalf("a manifest cut at %d parsed", i)
			}
		}
		flipped := bytes.Clone(data)
		flipped[i] ^= 0x10
		if _, err := parseManifest(flipped); err == nil {
			t.Fatalf("a manifest with byte %d flipped parsed", i)
		}
	}
}

func TestManifestRejectsBadContent(t *testing.T) {
	for name, mod := range map[string]func(m *manifest){
		"bad file name":  func(m *manifest) { m.Files[0].Name = "../x" },
		"manifest name":  func(m *manifest) { m.Files[0].Name = manifestName },
		"duplicate name": func(m *manifest) { m.Files[1].Name = m.Files[0].Name },
		"negative size":  func(m *manifest) { m.Files[0].Size = -1 },
		"short gen":      func(m *manifest) { m.Gen = "ab" },
		"non-hex gen":    func(m *manifest) { m.Gen = "0123456789abcdef0123456789abcdeZ" },
	} {
		m := sampleManifest()
		mod(m)
		data, _ := encodeManifest(m)
		if _, err := parseManifest(data); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	data, _ := encodeManifest(sampleManifest())
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte(manifestMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		for _, fr := range m.Files {
			if !validName(fr.Name) || fr.Size < 0 {
				t.Fatalf("parsed an invalid file record %+v", fr)
			}
		}
		again, err := encodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		if m2, err := parseManifest(again); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded manifest: %v", err)
		}
	})
}
