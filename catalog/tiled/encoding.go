package tiled

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// acceptEncoding is what every request offers. The server picks by its own preference
// (blosc > lz4 > zstd > gzip for arrays), not by this order.
const acceptEncoding = "gzip, zstd, lz4, blosc"

// errTooBig means a body, compressed or decoded, would exceed its limit.
var errTooBig = errors.New("response exceeds its size limit")

// decodeBody undoes the Content-Encoding of a response body. Every codec is bounded by
// limit decoded bytes: a small body that claims or inflates to more is refused before the
// memory is spent (decompression bombs).
func decodeBody(encoding string, body []byte, limit int64) ([]byte, error) {
	switch encoding {
	case "", "identity":
		if int64(len(body)) > limit {
			return nil, errTooBig
		}
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readLimited(zr, limit, "gzip")
	case "zstd":
		// The server writes one frame per write: a streamed body has several frames, which
		// the streaming decoder reads in turn.
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderMaxMemory(uint64(limit)+1), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		return readLimited(zr, limit, "zstd")
	case "lz4":
		return decodeLZ4Prefixed(body, limit)
	case "blosc":
		return decodeBlosc(body, limit)
	}
	return nil, fmt.Errorf("unsupported content-encoding %q", encoding)
}

func readLimited(r io.Reader, limit int64, codec string) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", codec, err)
	}
	if n > limit {
		return nil, fmt.Errorf("%s: %w", codec, errTooBig)
	}
	return buf.Bytes(), nil
}

// decodeLZ4Prefixed decodes python-lz4's lz4.block.compress output: a 4-byte little-endian
// decoded size, then one LZ4 block.
func decodeLZ4Prefixed(b []byte, limit int64) ([]byte, error) {
	if len(b) < 4 {
		return nil, errors.New("lz4: body shorter than its size prefix")
	}
	n := int64(binary.LittleEndian.Uint32(b))
	if n > limit {
		return nil, fmt.Errorf("lz4: %w (%d bytes declared)", errTooBig, n)
	}
	dst := make([]byte, n)
	if err := lz4Block(dst, b[4:]); err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	return dst, nil
}

var errCorrupt = errors.New("corrupt compressed block")

// lz4Block decodes one LZ4 block (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md)
// into dst, which must come out exactly full.
func lz4Block(dst, src []byte) error {
	d, s := 0, 0
	for s < len(src) {
		token := src[s]
		s++
		lit := int(token >> 4)
		if lit == 15 {
			for {
				if s >= len(src) {
					return errCorrupt
				}
				c := src[s]
				s++
				lit += int(c)
				if lit > len(src) {
					return errCorrupt
				}
				if c != 255 {
					break
				}
			}
		}
		if lit > len(src)-s || lit > len(dst)-d {
			return errCorrupt
		}
		copy(dst[d:], src[s:s+lit])
		d += lit
		s += lit
		if s == len(src) {
			break // the last sequence has literals only
		}
		if s+2 > len(src) {
			return errCorrupt
		}
		off := int(src[s]) | int(src[s+1])<<8
		s += 2
		if off == 0 || off > d {
			return errCorrupt
		}
		ml := int(token & 15)
		if ml == 15 {
			for {
				if s >= len(src) {
					return errCorrupt
				}
				c := src[s]
				s++
				ml += int(c)
				if ml > len(dst) {
					return errCorrupt
				}
				if c != 255 {
					break
				}
			}
		}
		ml += 4
		if ml > len(dst)-d {
			return errCorrupt
		}
		// Overlapping copies repeat the pattern, byte by byte where they overlap.
		for i := 0; i < ml; i++ {
			dst[d+i] = dst[d-off+i]
		}
		d += ml
	}
	if d != len(dst) {
		return fmt.Errorf("%w: %d bytes decoded, %d declared", errCorrupt, d, len(dst))
	}
	return nil
}

// Blosc1 header flags (c-blosc 1.x, blosc.h and blosc.c).
const (
	bloscShuffle    = 0x01
	bloscMemcpyed   = 0x02
	bloscBitshuffle = 0x04
	bloscNoSplit    = 0x10
)

// decodeBlosc decodes one blosc1 chunk: a 16-byte header (version, versionlz, flags,
// typesize, nbytes, blocksize, cbytes), then either the raw bytes (memcpyed) or a table of
// block offsets and the blocks, each split into typesize streams unless the no-split flag is
// set, each stream compressed with the codec named in flags bits 5-7, then unshuffled.
// Codecs: lz4 (what tiled sends), zlib and zstd; blosclz and bitshuffle are refused.
func decodeBlosc(b []byte, limit int64) ([]byte, error) {
	if len(b) < 16 {
		return nil, errors.New("blosc: chunk shorter than its header")
	}
	flags, typesize := b[2], int(b[3])
	nbytes := int64(binary.LittleEndian.Uint32(b[4:]))
	blocksize := int64(binary.LittleEndian.Uint32(b[8:]))
	cbytes := int64(binary.LittleEndian.Uint32(b[12:]))
	if nbytes > limit {
		return nil, fmt.Errorf("blosc: %w (%d bytes declared)", errTooBig, nbytes)
	}
	if cbytes != int64(len(b)) {
		return nil, fmt.Errorf("blosc: header says %d bytes, chunk has %d", cbytes, len(b))
	}
	if typesize == 0 {
		return nil, errors.New("blosc: typesize 0")
	}
	dst := make([]byte, nbytes)
	if flags&bloscMemcpyed != 0 {
		if int64(len(b)-16) != nbytes {
			return nil, errors.New("blosc: memcpyed chunk of the wrong size")
		}
		copy(dst, b[16:])
		return dst, nil
	}
	if flags&bloscBitshuffle != 0 {
		return nil, errors.New("blosc: bitshuffle is not supported")
	}
	if nbytes == 0 {
		return dst, nil
	}
	if blocksize <= 0 || blocksize > nbytes && nbytes > 0 && blocksize > 1<<30 {
		return nil, errors.New("blosc: bad block size")
	}
	nblocks := (nbytes + blocksize - 1) / blocksize
	if 16+4*nblocks > int64(len(b)) {
		return nil, errors.New("blosc: block table past the end")
	}
	codec := flags >> 5
	tmp := make([]byte, blocksize)
	for i := int64(0); i < nblocks; i++ {
		start := int64(binary.LittleEndian.Uint32(b[16+4*i:]))
		bsize := blocksize
		if i == nblocks-1 && nbytes%blocksize != 0 {
			bsize = nbytes % blocksize
		}
		out := dst[i*blocksize : i*blocksize+bsize]
		shuffled := flags&bloscShuffle != 0 && typesize > 1
		target := out
		if shuffled {
			target = tmp[:bsize]
		}
		nsplit := int64(1)
		if flags&bloscNoSplit == 0 && typesize <= 16 && bsize/int64(typesize) >= 128 && bsize%int64(typesize) == 0 {
			nsplit = int64(typesize)
		}
		neblock := bsize / nsplit
		pos := start
		for j := int64(0); j < nsplit; j++ {
			if pos < 16 || pos+4 > int64(len(b)) {
				return nil, errors.New("blosc: block offset out of range")
			}
			csize := int64(int32(binary.LittleEndian.Uint32(b[pos:])))
			pos += 4
			if csize < 0 || pos+csize > int64(len(b)) {
				return nil, errors.New("blosc: stream past the end")
			}
			src, part := b[pos:pos+csize], target[j*neblock:(j+1)*neblock]
			pos += csize
			if csize == neblock {
				copy(part, src)
				continue
			}
			if err := bloscCodec(codec, part, src); err != nil {
				return nil, fmt.Errorf("blosc: block %d: %w", i, err)
			}
		}
		if shuffled {
			unshuffle(out, target, typesize)
		}
	}
	return dst, nil
}

func bloscCodec(codec byte, dst, src []byte) error {
	switch codec {
	case 1: // lz4 and lz4hc
		return lz4Block(dst, src)
	case 3: // zlib
		zr, err := zlib.NewReader(bytes.NewReader(src))
		if err != nil {
			return err
		}
		got, err := readLimited(zr, int64(len(dst)), "zlib")
		if err != nil {
			return err
		}
		if len(got) != len(dst) {
			return errCorrupt
		}
		copy(dst, got)
		return nil
	case 4: // zstd
		zr, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(len(dst))+1), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		defer zr.Close()
		got, err := zr.DecodeAll(src, dst[:0:len(dst)])
		if err != nil {
			return err
		}
		if len(got) != len(dst) {
			return errCorrupt
		}
		return nil
	case 0:
		return errors.New("codec blosclz is not supported")
	}
	return fmt.Errorf("unknown codec %d", codec)
}

// unshuffle undoes blosc's byte shuffle of one block: src holds byte 0 of every element,
// then byte 1, ...; bytes past the last whole element are copied as they are.
func unshuffle(dst, src []byte, typesize int) {
	n := len(src) / typesize
	for i := 0; i < n; i++ {
		for j := 0; j < typesize; j++ {
			dst[i*typesize+j] = src[j*n+i]
		}
	}
	copy(dst[n*typesize:], src[n*typesize:])
}
