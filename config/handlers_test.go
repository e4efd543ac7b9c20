package config

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestHandlerSpec(t *testing.T) {
	tests := []struct {
		class, spec string // spec "" means unknown
	}{
		{"area_detector_handlers.handlers.AreaDetectorHDF5Handler", "AD_HDF5"},
		{"area_detector_handlers.handlers.AreaDetectorHDF5SWMRHandler", "AD_HDF5_SWMR"},
		{"area_detector_handlers.handlers.AreaDetectorTiffHandler", "AD_TIFF"},
		{"area_detector_handlers.handlers.AreaDetectorHDF5TimestampHandler", "AD_HDF5_TS"},
		{"area_detector_handlers.handlers.TimepixHDF5Handler", "TPX_HDF5"},
		{"area_detector_handlers.handlers.Xspress3HDF5Handler", "XSP3"},
		{"area_detector_handlers.eiger.EigerHandler", "AD_EIGER"},
		{"area_detector_handlers.eiger:EigerHandler", "AD_EIGER"}, // entry-point form
		{" area_detector_handlers.handlers:AreaDetectorHDF5Handler ", "AD_HDF5"},
		{"ophyd.sim.NumpySeqHandler", "NPY_SEQ"},
		{"databroker.assets.handlers.AreaDetectorHDF5Handler", "AD_HDF5"},
		{"databroker.assets.handlers.AreaDetectorHDF5SWMRHandler", "AD_HDF5_SWMR"},
		{"databroker.assets.handlers.Xspress3HDF5Handler", "XSP3"},
		{"databroker.assets.handlers.NpyHandler", "npy"},
		{"databroker.assets.handlers.NpyFrameWise", "npy_FRAMEWISE"},
		{"filestore.handlers.AreaDetectorHDF5Handler", "AD_HDF5"},
		{"eiger_io.fs_handler.EigerHandler", "AD_EIGER"},
		{"hxntools.handlers.timepix.TimepixHDF5Handler", "TPX_HDF5"},
		// Python handlers brokerfs has no counterpart of.
		{"area_detector_handlers.handlers.AreaDetectorSPEHandler", ""},
		{"area_detector_handlers.handlers.PilatusCBFHandler", ""},
		{"databroker.assets.path_only_handlers.RawHandler", ""},
		{"AreaDetectorHDF5Handler", ""}, // a bare class name says nothing of its module
		{"", ""},
	}
	for _, tt := range tests {
		spec, ok := HandlerSpec(tt.class)
		if spec != tt.spec || ok != (tt.spec != "") {
			t.Errorf("HandlerSpec(%q) = %q, %v; want %q", tt.class, spec, ok, tt.spec)
		}
	}
}

func TestHandlerRegistry(t *testing.T) {
	env := testEnv(t)
	write(t, filepath.Join(env.XDGDataHome, "intake", "c.yml"), `sources:
  mp:
    driver: bluesky-msgpack-catalog
    args:
      paths: ["/data/docs/*.msgpack"]
      handler_registry:
        AD_HDF5: area_detector_handlers.handlers.AreaDetectorHDF5Handler
        AD_EIGER2: area_detector_handlers.eiger:EigerHandler
        SPECS_HDF5: beamline_profile.handlers.SpecsHandler
        NPY_SEQ: {module: ophyd.sim, class: NumpySeqHandler}
        EMPTY: null
`)
	srcs, errs := Discover(env)
	noErrors(t, errs)
	s := byName(t, srcs, "mp")
	wantH := map[string]string{"AD_HDF5": "AD_HDF5", "AD_EIGER2": "AD_EIGER", "NPY_SEQ": "NPY_SEQ"}
	if !reflect.DeepEqual(s.Handlers, wantH) {
		t.Errorf("Handlers = %v, want %v", s.Handlers, wantH)
	}
	wantW := []string{ // in spec order
		"handler for spec EMPTY names no class; reads of EMPTY fail unless --handler EMPTY=COMMAND is given",
		"handler beamline_profile.handlers.SpecsHandler for spec SPECS_HDF5 is a Python class brokerfs does not know; reads of SPECS_HDF5 fail unless --handler SPECS_HDF5=COMMAND is given",
	}
	if !reflect.DeepEqual(s.Warnings, wantW) {
		t.Errorf("Warnings =\n%q\nwant\n%q", s.Warnings, wantW)
	}
}
