package hdf5

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A decoder for HDF5 filter 32008, bitshuffle (optionally with LZ4), which Dectris Eiger
// detectors write. Debian 12's hdf5-filter-plugin is built without its bitshuffle plugin
// (Debian bug #1025391), so libhdf5 cannot read those chunks by itself there; this decoder
// is registered with libhdf5 (H5Zregister) when no plugin provides the filter. It follows
// the format of bitshuffle 0.3-0.5 (src/bitshuffle.c, src/bshuf_h5filter.c):
//
//	chunk   = [uint64 BE: uncompressed bytes][uint32 BE: block size in bytes] blocks leftover
//	block   = [uint32 BE: n] n bytes of one LZ4 block, which decompress to a bitshuffled block
//	leftover = the last (elements % 8) elements, stored as they are
//
// Without LZ4 (cd_values[4] == 0) the chunk is the blocks' bitshuffled bytes with no
// headers. A block of n elements (n a multiple of 8; the last block is cut down to one)
// stores, for each byte j of an element and each bit k of that byte (LSB first), one row of
// n bits: bit k of byte j of each element, elements in order, packed LSB first.

var errBitshuffle = errors.New("corrupt bitshuffle chunk")

const (
	bshufBlockedMult   = 8    // BSHUF_BLOCKED_MULT
	bshufTargetBlockB  = 8192 // BSHUF_TARGET_BLOCK_SIZE_B
	bshufMinRecommend  = 128  // BSHUF_MIN_RECOMMEND_BLOCK
	bshufCompressLZ4   = 2    // BSHUF_H5_COMPRESS_LZ4
	bshufCompressNone  = 0
	bshufHeaderLZ4Size = 12
)

// bshufDefaultBlock is bshuf_default_block_size.
func bshufDefaultBlock(elem int) int {
	b := bshufTargetBlockB / elem
	b = b / bshufBlockedMult * bshufBlockedMult
	return max(b, bshufMinRecommend)
}

// bshufChunkSize returns the uncompressed size an LZ4 chunk declares and its block size in
// elements.
func bshufChunkSize(in []byte, elem int) (n uint64, block int, err error) {
	if len(in) < bshufHeaderLZ4Size {
		return 0, 0, fmt.Errorf("%w: %d-byte chunk", errBitshuffle, len(in))
	}
	n = binary.BigEndian.Uint64(in)
	bb := int(binary.BigEndian.Uint32(in[8:]))
	if bb%elem != 0 {
		return 0, 0, fmt.Errorf("%w: block of %d bytes for %d-byte elements", errBitshuffle, bb, elem)
	}
	return n, bb / elem, nil
}

// bshufDecode decodes the data of one chunk (after the 12-byte header when lz4) into out,
// whose length is the uncompressed size. block is in elements (0: the default).
func bshufDecode(in, out []byte, elem, block int, lz4 bool) error {
	if elem <= 0 || len(out)%elem != 0 {
		return fmt.Errorf("%w: %d bytes of %d-byte elements", errBitshuffle, len(out), elem)
	}
	if block == 0 {
		block = bshufDefaultBlock(elem)
	}
	if block%bshufBlockedMult != 0 {
		return fmt.Errorf("%w: block of %d elements", errBitshuffle, block)
	}
	size := len(out) / elem
	// A block larger than the chunk (a corrupt header may claim 4 GiB) needs no more room
	// than the chunk.
	tmp := make([]byte, min(block, size)*elem)
	si, do := 0, 0
	one := func(n int) error {
		nbytes := n * elem
		src := in[min(si, len(in)):]
		if lz4 {
			if len(src) < 4 {
				return fmt.Errorf("%w: truncated block header", errBitshuffle)
			}
			c := int(binary.BigEndian.Uint32(src))
			if c > len(src)-4 {
				return fmt.Errorf("%w: block of %d bytes in %d", errBitshuffle, c, len(src)-4)
			}
			k, err := lz4Block(src[4:4+c], tmp[:nbytes])
			if err != nil {
				return err
			}
			if k != nbytes {
				return fmt.Errorf("%w: block decompressed to %d bytes, want %d", errBitshuffle, k, nbytes)
			}
			si += 4 + c
			src = tmp[:nbytes]
		} else {
			if len(src) < nbytes {
				return fmt.Errorf("%w: truncated block", errBitshuffle)
			}
			src = src[:nbytes]
			si += nbytes
		}
		bitUnshuffle(src, out[do:do+nbytes], n, elem)
		do += nbytes
		return nil
	}
	for i := 0; i < size/block; i++ {
		if err := one(block); err != nil {
			return err
		}
	}
	if last := size % block; last-last%bshufBlockedMult > 0 {
		if err := one(last - last%bshufBlockedMult); err != nil {
			return err
		}
	}
	left := size % bshufBlockedMult * elem
	if len(in)-si < left {
		return fmt.Errorf("%w: truncated leftover", errBitshuffle)
	}
	copy(out[do:], in[si:si+left])
	return nil
}

// bitUnshuffle undoes the bit transpose of one block of n elements (n a multiple of 8).
func bitUnshuffle(in, out []byte, n, elem int) {
	nb := n / 8 // bytes in one bit-row
	for j := 0; j < elem; j++ {
		rows := in[j*8*nb : (j+1)*8*nb]
		for ib := 0; ib < nb; ib++ {
			// Byte k of x: bits of 8 elements from bit-row k.
			x := uint64(rows[ib]) | uint64(rows[nb+ib])<<8 | uint64(rows[2*nb+ib])<<16 |
				uint64(rows[3*nb+ib])<<24 | uint64(rows[4*nb+ib])<<32 | uint64(rows[5*nb+ib])<<40 |
				uint64(rows[6*nb+ib])<<48 | uint64(rows[7*nb+ib])<<56
			x = transpose8x8(x)
			// Byte m of x is now byte j of element 8*ib+m.
			o := ib*8*elem + j
			for m := 0; m < 8; m++ {
				out[o+m*elem] = byte(x >> (8 * m))
			}
		}
	}
}

// transpose8x8 transposes the 8x8 bit matrix whose row r is byte r of x and column c bit c
// (bitshuffle's TRANS_BIT_8X8 on a little-endian machine).
func transpose8x8(x uint64) uint64 {
	t := (x ^ (x >> 7)) & 0x00AA00AA00AA00AA
	x = x ^ t ^ (t << 7)
	t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCC
	x = x ^ t ^ (t << 14)
	t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0
	x = x ^ t ^ (t << 28)
	return x
}

// lz4Block decompresses one raw LZ4 block (no frame) from src into dst and returns the
// bytes written. It never reads or writes out of bounds on corrupt input.
func lz4Block(src, dst []byte) (int, error) {
	si, di := 0, 0
	for si < len(src) {
		tok := src[si]
		si++
		lit := int(tok >> 4)
		if lit == 15 {
			for {
				if si >= len(src) {
					return di, fmt.Errorf("%w: lz4 literal length", errBitshuffle)
				}
				b := src[si]
				si++
				lit += int(b)
				if b != 255 {
					break
				}
			}
		}
		if lit > len(src)-si || lit > len(dst)-di {
			return di, fmt.Errorf("%w: lz4 literals overrun", errBitshuffle)
		}
		copy(dst[di:], src[si:si+lit])
		si += lit
		di += lit
		if si == len(src) {
			return di, nil // the last sequence has literals only
		}
		if len(src)-si < 2 {
			return di, fmt.Errorf("%w: lz4 offset", errBitshuffle)
		}
		off := int(src[si]) | int(src[si+1])<<8
		si += 2
		if off == 0 || off > di {
			return di, fmt.Errorf("%w: lz4 offset %d at %d", errBitshuffle, off, di)
		}
		ml := int(tok & 15)
		if ml == 15 {
			for {
				if si >= len(src) {
					return di, fmt.Errorf("%w: lz4 match length", errBitshuffle)
				}
				b := src[si]
				si++
				ml += int(b)
				if b != 255 {
					break
				}
			}
		}
		ml += 4
		if ml > len(dst)-di {
			return di, fmt.Errorf("%w: lz4 match overruns the block", errBitshuffle)
		}
		if off >= ml {
			copy(dst[di:di+ml], dst[di-off:di-off+ml])
		} else {
			// Overlapping match: a repeating pattern of period off.
			for k := 0; k < ml; k++ {
				dst[di+k] = dst[di-off+k]
			}
		}
		di += ml
	}
	return di, nil
}
