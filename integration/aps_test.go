package integration

import "testing"

// TestAPSJSONL mounts seven real APS runs in suitcase-jsonl form (streams named after motor
// labels, field names with spaces, a failed run, empty arrays) and checks them all.
func TestAPSJSONL(t *testing.T) {
	t.Parallel()
	const dir = "../testdata/apstools/jsonl"
	mnt, _ := mount(t, dir)
	expect(t, mnt, runFiles(t, dir))
}

// TestAPSMsgpackPack mounts a databroker-pack export of a real APS run (183 events as
// event_page documents, hundreds of baseline fields) and checks it.
func TestAPSMsgpackPack(t *testing.T) {
	t.Parallel()
	const dir = "../testdata/apstools/msgpack-pack/documents"
	mnt, _ := mount(t, dir)
	expect(t, mnt, runFiles(t, dir))
}
