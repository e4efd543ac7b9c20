// Package external runs handlers brokerfs does not know as external programs, so that a
// facility can plug in its own reader in any language: --handler SPEC=COMMAND.
//
// # Protocol (version 1)
//
// COMMAND is a program and its arguments (no shell). brokerfs talks to it over stdin and
// stdout in one of two modes, chosen by whoever configures the handler (Options.Serve):
//
// Exec mode (the default): one process per call. brokerfs starts COMMAND, writes one
// request (JSON, below) to its stdin and closes it, and reads the response from stdout
// until the process exits:
//
//   - op "read": the datum's array as a .npy file (what numpy.save writes: format 1.0, 2.0
//     or 3.0, any byte order, C or Fortran order; numeric or bool dtypes).
//   - op "describe": JSON {"dtype": "<u2", "shape": [2, 512, 512]}: the dtype and shape
//     read would return, from metadata only.
//   - op "files": JSON {"files": ["/abs/path/a.h5", ...]}: the files the datums read.
//
// A call fails when the process exits with a non-zero status (the error carries the last
// line it wrote to stderr), when stdout holds {"error": "message"} instead, or when it runs
// longer than the timeout (Options.Timeout, default 60 s; the process group is killed).
// Two exit statuses from sysexits.h carry meaning: 66 (EX_NOINPUT) says a file is missing
// and 75 (EX_TEMPFAIL) that a retry may help; brokerfs treats both as transient and retries
// the call for about 2 s, as databroker retries I/O errors.
//
// Serve mode: one long-running process per open resource, started at its first call and
// ended (stdin closed, then killed after a grace period) when brokerfs closes the resource
// (after it has been idle). Requests are the same JSON objects, one per line; the process
// answers each, in order, with one line of JSON, then a payload:
//
//	{"size": N}\n<N bytes: the .npy (read) or the JSON (describe, files)>
//	{"error": "message", "exit": 66}\n          (no payload; "exit" optional, as above)
//
// A process that dies, writes something else, or exceeds the timeout is killed; the call
// fails and the next call starts a new process. Calls to one process are serialised.
//
// # Requests
//
//	{"protocol": 1, "op": "read", "spec": "MY_SPEC", "path": "/data/2024/scan_0042.dat",
//	 "resource_kwargs": {"frame_per_point": 2}, "datum_kwargs": {"point_number": 3}}
//
// op is "read", "describe" or "files"; for "files", datum_kwargs is replaced by
// "datum_kwargs_list", a list of datum_kwargs objects. path is the resource's path after
// root_map, joined with resource_path. Kwargs are passed as stored: integers as JSON
// integers, floats always with a fraction or exponent (2.0, not 2), so Python sees the
// types the documents hold. The environment also carries BROKERFS_HANDLER_PROTOCOL=1 and
// BROKERFS_HANDLER_MODE=exec or serve.
//
// describe and files are optional: a program that answers {"unsupported": true} (exec) or
// {"error": "...", "unsupported": true} (serve) leaves brokerfs to describe by reading the
// datum, and to list the resource path itself as the one file.
//
// A minimal exec-mode handler in Python:
//
//	import json, sys, numpy as np
//	req = json.load(sys.stdin)
//	if req["op"] != "read":
//	    print(json.dumps({"unsupported": True})); sys.exit(0)
//	data = np.load(req["path"], mmap_mode="r")
//	np.save(sys.stdout.buffer, data[req["datum_kwargs"]["index"]])
//
// handlers/testdata/external_handler.py implements both modes and all ops.
package external
