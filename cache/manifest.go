package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"regexp"

	"golang.org/x/sys/unix"
)

// FormatVersion is the version of the manifest format and of the entry layout. A manifest of any
// other version is a miss, and the entry is removed.
// Version 2 added the boot id (bootLen bytes after the version).
const FormatVersion = 2

const (
	manifestName   = "MANIFEST"
	manifestMagic  = "BRKFSCM\n"
	bootLen        = 16                                       // a boot id, a UUID: see manifest.Boot
	manifestFixed  = len(manifestMagic) + 4 + bootLen + 4 + 4 // magic, version, boot, body length, crc
	maxManifest    = 64 << 20                                 // a manifest is read whole; bound what garbage can cost
	maxFiles       = 1 << 16
	maxNameLen     = 255
	checkBytes     = 4096 // the head and tail that Commit checksums and Entry.Open re-checks
	genHexLen      = 32
	manifestIntLen = 4
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	errCorrupt = errors.New("corrupt manifest")
	errVersion = errors.New("other manifest format version")

	nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// validName reports whether name may be a file of an entry: [A-Za-z0-9._-]+, not "." or "..", not
// the manifest's own name.
func validName(name string) bool {
	return len(name) <= maxNameLen && nameRE.MatchString(name) && name != "." && name != ".." &&
		name != manifestName
}

// fileRec is what a manifest records of one file of an entry.
type fileRec struct {
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	Ctime int64  `json:"ctime"` // st_ctim in nanoseconds since the epoch
	Ino   uint64 `json:"ino"`
	Head  uint32 `json:"head"` // CRC32C of the first min(size, 4096) bytes
	Tail  uint32 `json:"tail"` // CRC32C of the last min(size, 4096) bytes
}

// manifest is the last file written into an entry. The key is kept as bytes: a key need not be valid
// UTF-8, and JSON strings would replace such bytes.
type manifest struct {
	Key       []byte    `json:"key"`
	Gen       string    `json:"gen"`       // random, distinguishes two commits of one key
	Committed int64     `json:"committed"` // Unix nanoseconds
	Meta      []byte    `json:"meta"`
	Files     []fileRec `json:"files"`
	// Boot, when not zero, says that the entry's files and manifest were not yet synced when
	// it was committed, during the boot of this id (/proc/sys/kernel/random/boot_id): the
	// page cache holds them whole, but only until the kernel stops. Such an entry is served
	// only during that boot; the Store that committed it syncs it soon after and rewrites the
	// manifest with a zero Boot, which has the same length, so the accounting stays exact.
	// Zero: durable. Kept outside the JSON body, at a fixed offset.
	Boot [bootLen]byte `json:"-"`
}

// encodeManifest lays out magic, version, boot id, body length, the JSON body and a CRC32C of all
// before it.
func encodeManifest(m *manifest) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	buf := make([]byte, 0, manifestFixed+len(body))
	buf = append(buf, manifestMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, FormatVersion)
	buf = append(buf, m.Boot[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(body)))
	buf = append(buf, body...)
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
	return buf, nil
}

// parseManifest decodes and validates a manifest. Any damage is errCorrupt, another version
// errVersion; it never panics on garbage.
func parseManifest(data []byte) (*manifest, error) {
	if len(data) < manifestFixed || !bytes.HasPrefix(data, []byte(manifestMagic)) {
		return nil, errCorrupt
	}
	p := len(manifestMagic)
	if v := binary.LittleEndian.Uint32(data[p:]); v != FormatVersion {
		return nil, fmt.Errorf("%w %d", errVersion, v)
	}
	p += manifestIntLen
	var boot [bootLen]byte
	p += copy(boot[:], data[p:])
	n := binary.LittleEndian.Uint32(data[p:])
	p += manifestIntLen
	if uint64(n) != uint64(len(data)-manifestFixed) {
		return nil, errCorrupt
	}
	end := p + int(n)
	if crc32.Checksum(data[:end], crcTable) != binary.LittleEndian.Uint32(data[end:]) {
		return nil, errCorrupt
	}
	var m manifest
	if err := json.Unmarshal(data[p:end], &m); err != nil {
		return nil, errCorrupt
	}
	m.Boot = boot
	if len(m.Gen) != genHexLen || len(m.Files) > maxFiles {
		return nil, errCorrupt
	}
	if _, err := hex.DecodeString(m.Gen); err != nil {
		return nil, errCorrupt
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if !validName(f.Name) || seen[f.Name] || f.Size < 0 {
			return nil, errCorrupt
		}
		seen[f.Name] = true
	}
	return &m, nil
}

// manifestStat identifies one version of a manifest file.
type manifestStat struct {
	ino         uint64
	ctime, size int64
}

func statOf(st *unix.Stat_t) manifestStat {
	return manifestStat{ino: st.Ino, ctime: st.Ctim.Nano(), size: st.Size}
}

// readManifest reads and parses the manifest at path, bounding what it reads. It also returns the
// identity of the file it read.
func readManifest(path string) (*manifest, manifestStat, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = errCorrupt
		}
		return nil, manifestStat{}, err
	}
	defer f.Close()
	return readManifestFile(f)
}

// readManifestFile reads and parses the manifest open as f (see readManifest).
func readManifestFile(f *os.File) (*manifest, manifestStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, manifestStat{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxManifest {
		return nil, manifestStat{}, errCorrupt
	}
	data := make([]byte, st.Size+1)
	n, err := io.ReadFull(f, data)
	if err != io.ErrUnexpectedEOF {
		if err == nil {
			err = errCorrupt // longer than it was a moment ago: someone is writing it
		}
		return nil, manifestStat{}, err
	}
	m, err := parseManifest(data[:n])
	return m, statOf(&st), err
}

// checksums returns the CRC32C of the first and the last min(size, 4096) bytes of f.
func checksums(f *os.File, size int64) (head, tail uint32, err error) {
	n := min(size, checkBytes)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return 0, 0, err
	}
	head = crc32.Checksum(buf, crcTable)
	if _, err := f.ReadAt(buf, size-n); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return 0, 0, err
	}
	return head, crc32.Checksum(buf, crcTable), nil
}
