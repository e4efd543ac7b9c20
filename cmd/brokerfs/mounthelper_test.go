package main

import (
	"fmt"
	"testing"
)

func TestHelperArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		log  string
	}{
		{[]string{"/data/cat", "/mnt/b", "-o", "rw,allow_other,root_map=/old=/new,nofail,x-systemd.automount,log=/var/log/b.log"},
			"[mount --allow-other --root-map=/old=/new /data/cat /mnt/b]", "/var/log/b.log"},
		{[]string{"-n", "/data/cat", "/mnt/b", "-o", `query={"plan_name":"scan","n":{"$in":[1,2]}},default_permissions,live_ttl=2s`},
			`[mount --query={"plan_name":"scan","n":{"$in":[1,2]}} --live-ttl=2s -o default_permissions /data/cat /mnt/b]`, ""},
		{[]string{"src", "mnt", "-odefaults,debug"}, "[mount --debug src mnt]", ""},
		{[]string{"src", "mnt", "-o", "transform=start=fixes.start,transform_file=/etc/brokerfs/t.yml,python=/opt/py/bin/python3"},
			"[mount --transform=start=fixes.start --transform-file=/etc/brokerfs/t.yml --python=/opt/py/bin/python3 src mnt]", ""},
		{[]string{"mongodb://db/mds", "/mnt/m", "-o", "_netdev,since=2024-03-01,until=2024-03-02T12:00:00Z"},
			"[mount --since=2024-03-01 --until=2024-03-02T12:00:00Z mongodb://db/mds /mnt/m]", ""},
	} {
		got, log, err := helperArgs(tc.args)
		if err != nil {
			t.Errorf("helperArgs(%q): %v", tc.args, err)
			continue
		}
		if fmt.Sprint(got) != tc.want || (tc.log != "" && log != tc.log) {
			t.Errorf("helperArgs(%q) = %v, log %s\nwant %s, log %s", tc.args, got, log, tc.want, tc.log)
		}
	}
	for _, bad := range [][]string{{"only-one"}, {"a", "b", "--frobnicate"}} {
		if _, _, err := helperArgs(bad); err == nil {
			t.Errorf("helperArgs(%q) accepted", bad)
		}
	}
}
