package hdf5

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// shuffleRef is the bit transpose spelled out bit by bit: row j*8+k holds bit k of byte j
// of each element, LSB first.
func shuffleRef(in []byte, n, elem int) []byte {
	out := make([]byte, len(in))
	for i := 0; i < n; i++ {
		for j := 0; j < elem; j++ {
			for k := 0; k < 8; k++ {
				if in[i*elem+j]>>k&1 == 1 {
					bit := (j*8+k)*n + i
					out[bit/8] |= 1 << (bit % 8)
				}
			}
		}
	}
	return out
}

// lz4Literals encodes b as one LZ4 block of literals only (valid LZ4, no matches).
func lz4Literals(b []byte) []byte {
	var out []byte
	n := len(b)
	if n < 15 {
		out = append(out, byte(n<<4))
	} else {
		out = append(out, 0xF0)
		r := n - 15
		for ; r >= 255; r -= 255 {
			out = append(out, 255)
		}
		out = append(out, byte(r))
	}
	return append(out, b...)
}

func TestTranspose8x8(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		x := r.Uint64()
		var want uint64
		for row := 0; row < 8; row++ {
			for col := 0; col < 8; col++ {
				if x>>(8*row+col)&1 == 1 {
					want |= 1 << (8*col + row)
				}
			}
		}
		if got := transpose8x8(x); got != want {
			t.Fatalf("transpose8x8(%#x) = %#x, want %#x", x, got, want)
		}
	}
}

func TestBitshuffleDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ size, elem, block int }{
		{16, 2, 0}, {2257, 4, 0}, {2257, 2, 0}, {4096 * 3, 2, 0}, {1000, 1, 64}, {13, 8, 0}, {7, 4, 0},
	} {
		raw := make([]byte, c.size*c.elem)
		for i := range raw {
			raw[i] = byte(r.IntN(7)) // compressible-ish
		}
		block := c.block
		if block == 0 {
			block = bshufDefaultBlock(c.elem)
		}
		// Encode as bitshuffle does: full blocks, a last block cut to a multiple of 8,
		// leftover elements as they are.
		var plain, lz []byte
		lz = binary.BigEndian.AppendUint64(lz, uint64(len(raw)))
		lz = binary.BigEndian.AppendUint32(lz, uint32(block*c.elem))
		pos := 0
		enc := func(n int) {
			s := shuffleRef(raw[pos*c.elem:(pos+n)*c.elem], n, c.elem)
			plain = append(plain, s...)
			l := lz4Literals(s)
			lz = binary.BigEndian.AppendUint32(lz, uint32(len(l)))
			lz = append(lz, l...)
			pos += n
		}
		for i := 0; i < c.size/block; i++ {
			enc(block)
		}
		if last := c.size % block; last-last%8 > 0 {
			enc(last - last%8)
		}
		plain = append(plain, raw[pos*c.elem:]...)
		lz = append(lz, raw[pos*c.elem:]...)

		out := make([]byte, len(raw))
		if err := bshufDecode(plain, out, c.elem, c.block, false); err != nil || !bytes.Equal(out, raw) {
			t.Errorf("%+v plain: %v", c, err)
		}
		n, blk, err := bshufChunkSize(lz, c.elem)
		if err != nil || n != uint64(len(raw)) || blk != block {
			t.Fatalf("%+v header: %d %d %v", c, n, blk, err)
		}
		out = make([]byte, len(raw))
		if err := bshufDecode(lz[12:], out, c.elem, blk, true); err != nil || !bytes.Equal(out, raw) {
			t.Errorf("%+v lz4: %v", c, err)
		}
		// Truncated input fails cleanly.
		if err := bshufDecode(lz[12:len(lz)-1-len(raw)%8], out, c.elem, blk, true); err == nil && len(raw) > 8 {
			t.Errorf("%+v truncated: no error", c)
		}
	}
}

func TestLZ4Matches(t *testing.T) {
	// "abcabcabcabcabc..." as literals "abc" then a match of offset 3, length 12 (overlapping).
	src := []byte{0x38, 'a', 'b', 'c', 3, 0, 0x10, 'x'}
	dst := make([]byte, 16)
	n, err := lz4Block(src, dst)
	if err != nil || string(dst[:n]) != "abcabcabcabcabcx" {
		t.Fatalf("%q %v", dst[:n], err)
	}
	for _, bad := range [][]byte{{0x38, 'a', 'b', 'c', 9, 0}, {0x38, 'a', 'b', 'c', 0, 0}, {0xF0}, {0x30, 'a'}} {
		if _, err := lz4Block(bad, make([]byte, 16)); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

func FuzzBitshuffle(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 32, 0, 0, 0, 2, 0x10, 1}, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, elem uint8) {
		e := int(elem%8) + 1
		n, blk, err := bshufChunkSize(in, e)
		if err != nil || n > 1<<16 {
			return
		}
		out := make([]byte, n-n%uint64(e))
		_ = bshufDecode(in[12:], out, e, blk, true)
	})
}
