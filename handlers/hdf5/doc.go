// Package hdf5 holds the HDF5 handlers of area-detector-handlers 0.0.10: AD_HDF5,
// AD_HDF5_SWMR and TPX_HDF5 (frames [pn*fpp, (pn+1)*fpp) of one dataset), AD_EIGER
// (a Dectris master file and its data files) and XSP3 (one Xspress3 spectrum), over Debian's
// libhdf5 through gonum.org/v1/hdf5.
//
// Reads select a hyperslab (H5Sselect_hyperslab) and read only it: a datum never reads
// more than its frames, and Describe reads only dataset headers (type and dims). Arrays come
// back little-endian whatever the file's byte order.
//
// Where gonum falls short this package calls libhdf5 itself (h5.go): a thread-safe libhdf5
// keeps its error stack and its print-errors switch per OS thread, and gonum turns errors
// off only on the thread its init ran on and reports failures as "code -1". Every call here
// runs on a locked OS thread with printing off, and a failure carries the innermost messages
// of libhdf5's stack ("file signature not found", "unable to lock file, errno = 11"). Type
// order and sign, SWMR-read open, H5Drefresh and external-link targets are small cgo calls.
//
// Errors: a missing file wraps fs.ErrNotExist; a missing dataset wraps ErrNoDataset (which
// matches fs.ErrNotExist too: area-detector-handlers makes h5py's KeyError an IOError so
// that it is retried, as a file still being written may lack it); a point past the end wraps
// ErrOutOfRange; a file another process holds locked wraps EAGAIN; a dataset that is not
// integers or floats wraps ErrType. Messages name the file and the dataset.
//
// Compression: gzip, shuffle and the other filters libhdf5 has built in work as they are;
// plugins (LZ4, 32004, from Debian's hdf5-filter-plugin) load from libhdf5's plugin path
// (HDF5_PLUGIN_PATH, else Debian's /usr/lib/x86_64-linux-gnu/hdf5/serial/plugins).
// Bitshuffle/LZ4 (32008), which Eiger detectors write, is not in Debian 12's
// hdf5-filter-plugin (built without it, Debian bug #1025391), so this package registers a
// decoder of its own (bitshuffle.go) unless a plugin on the path provides the filter; see
// BitshuffleSource.
//
// Handlers are safe for concurrent use; libhdf5 serialises its calls, so concurrent reads
// of one process do not run in parallel inside libhdf5. Chunks filtered by deflate and
// shuffle only are read raw (H5Dread_chunk) and decoded in Go outside libhdf5's lock, so
// concurrent readers of gzip frames decompress in parallel (chunk.go). Frames of datasets
// stored without filters (chunks of whole frames, or contiguous), little-endian, are read by
// pread at the addresses libhdf5 gives, on a descriptor of the file of this package's own,
// outside libhdf5's lock and straight into the caller's buffer; every address is checked
// against the file's size, and a file changed since it was opened fails the read (raw.go).
// Such datums can also be read by byte range (handlers.RangeReader), which the table layer
// uses to serve their .npy without a cache copy.
//
// Files: every file libhdf5 opens for a handler, the resource's own and those it opens by
// itself (external links, external raw storage, virtual dataset sources), is checked
// against the handlers.Guard the handler was opened with (guard.go): inside the allowed
// roots, and a regular file.
package hdf5
