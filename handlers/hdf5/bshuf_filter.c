// The HDF5 side of the bitshuffle decoder (filter 32008): parse cd_values and the chunk
// header, then let Go (bitshuffle.go) decode. Reading only: libhdf5 never calls this to write.

#include <stdlib.h>
#include <stdint.h>
#include <hdf5.h>
#include "_cgo_export.h"

#define BFS_BSHUF_FILTER 32008
#define BFS_BSHUF_LZ4 2

static void bfs_push(const char *msg) {
	H5Epush2(H5E_DEFAULT, __FILE__, "bfs_bshuf_filter", __LINE__, H5E_ERR_CLS, H5E_PLINE, H5E_CALLBACK, "%s", msg);
}

static uint64_t bfs_be64(const unsigned char *b) {
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) v = (v << 8) | b[i];
	return v;
}

static uint32_t bfs_be32(const unsigned char *b) {
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static size_t bfs_bshuf_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
		size_t nbytes, size_t *buf_size, void **buf) {
	if (!(flags & H5Z_FLAG_REVERSE)) {
		bfs_push("bitshuffle: brokerfs decodes only");
		return 0;
	}
	if (cd_nelmts < 3 || cd_values[2] == 0) {
		bfs_push("bitshuffle: missing element size in cd_values");
		return 0;
	}
	size_t elem = cd_values[2];
	size_t block = cd_nelmts > 3 ? cd_values[3] : 0;
	int comp = cd_nelmts > 4 ? (int)cd_values[4] : 0;
	const unsigned char *in = *buf;
	size_t in_len = nbytes, out_len = nbytes;
	if (comp == BFS_BSHUF_LZ4) {
		if (nbytes < 12) {
			bfs_push("bitshuffle: chunk shorter than its header");
			return 0;
		}
		uint64_t n = bfs_be64(in);
		uint32_t bb = bfs_be32(in + 8);
		if (bb % elem != 0 || n > ((uint64_t)1 << 40)) {
			bfs_push("bitshuffle: bad chunk header");
			return 0;
		}
		block = bb / elem;
		out_len = (size_t)n;
		in += 12;
		in_len -= 12;
	} else if (comp != 0) {
		bfs_push("bitshuffle: only LZ4 (cd_values[4] = 2) or no compression is supported");
		return 0;
	}
	void *out = malloc(out_len > 0 ? out_len : 1);
	if (out == NULL) {
		bfs_push("bitshuffle: out of memory");
		return 0;
	}
	if (bfsBshufDecode((void *)in, in_len, out, out_len, elem, block, comp == BFS_BSHUF_LZ4) != 0) {
		free(out);
		bfs_push("bitshuffle: corrupt chunk");
		return 0;
	}
	free(*buf);
	*buf = out;
	*buf_size = out_len;
	return out_len;
}

// bfs_register_bitshuffle returns 1 when a plugin already provides filter 32008, 0 when it
// registered the built-in decoder, -1 on failure.
int bfs_register_bitshuffle(void) {
	if (H5Zfilter_avail(BFS_BSHUF_FILTER) > 0) return 1;
	H5Eclear2(H5E_DEFAULT);
	H5Z_class2_t cls = {
		H5Z_CLASS_T_VERS, (H5Z_filter_t)BFS_BSHUF_FILTER, 0, 1,
		"bitshuffle; brokerfs built-in decoder", NULL, NULL, bfs_bshuf_filter,
	};
	return H5Zregister(&cls) < 0 ? -1 : 0;
}
