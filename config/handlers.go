package config

import (
	"fmt"
	"sort"
	"strings"
)

// handlerClasses maps the Python handler classes whose behaviour brokerfs implements to the
// brokerfs spec that implements it. Sources: the databroker.handlers entry points of
// area-detector-handlers' setup.py, databroker.assets.handlers (databroker 0.x/1.x),
// filestore.handlers (its predecessor), ophyd.sim, and the NSLS-II packages whose handlers
// area-detector-handlers absorbed (eiger-io, hxntools).
var handlerClasses = map[string]string{
	// area-detector-handlers
	"area_detector_handlers.handlers.AreaDetectorHDF5Handler":          "AD_HDF5",
	"area_detector_handlers.handlers.AreaDetectorHDF5SWMRHandler":      "AD_HDF5_SWMR",
	"area_detector_handlers.handlers.AreaDetectorTiffHandler":          "AD_TIFF",
	"area_detector_handlers.handlers.AreaDetectorHDF5TimestampHandler": "AD_HDF5_TS",
	"area_detector_handlers.handlers.TimepixHDF5Handler":               "TPX_HDF5",
	"area_detector_handlers.handlers.Xspress3HDF5Handler":              "XSP3",
	"area_detector_handlers._xspress3.Xspress3HDF5Handler":             "XSP3",
	"area_detector_handlers.eiger.EigerHandler":                        "AD_EIGER",

	// databroker.assets.handlers: the handlers databroker shipped before
	// area-detector-handlers existed, still named in 0.x configs.
	"databroker.assets.handlers.AreaDetectorHDF5Handler":          "AD_HDF5",
	"databroker.assets.handlers.AreaDetectorHDF5SWMRHandler":      "AD_HDF5_SWMR",
	"databroker.assets.handlers.AreaDetectorTiffHandler":          "AD_TIFF",
	"databroker.assets.handlers.AreaDetectorHDF5TimestampHandler": "AD_HDF5_TS",
	"databroker.assets.handlers.Xspress3HDF5Handler":              "XSP3",
	"databroker.assets.handlers.NpyHandler":                       "npy",
	"databroker.assets.handlers.NpyFrameWise":                     "npy_FRAMEWISE",

	// filestore.handlers: databroker.assets' predecessor.
	"filestore.handlers.AreaDetectorHDF5Handler":          "AD_HDF5",
	"filestore.handlers.AreaDetectorHDF5SWMRHandler":      "AD_HDF5_SWMR",
	"filestore.handlers.AreaDetectorTiffHandler":          "AD_TIFF",
	"filestore.handlers.AreaDetectorHDF5TimestampHandler": "AD_HDF5_TS",
	"filestore.handlers.Xspress3HDF5Handler":              "XSP3",
	"filestore.handlers.NpyHandler":                       "npy",
	"filestore.handlers.NpyFrameWise":                     "npy_FRAMEWISE",

	// Elsewhere.
	"ophyd.sim.NumpySeqHandler":                    "NPY_SEQ",
	"eiger_io.fs_handler.EigerHandler":             "AD_EIGER",
	"hxntools.handlers.timepix.TimepixHDF5Handler": "TPX_HDF5",
}

// HandlerSpec returns the brokerfs spec that reads what the Python handler class reads. The
// class path may be dotted ("pkg.mod.Class") or an entry-point reference ("pkg.mod:Class").
func HandlerSpec(class string) (spec string, ok bool) {
	spec, ok = handlerClasses[strings.ReplaceAll(strings.TrimSpace(class), ":", ".")]
	return spec, ok
}

// mapHandlers translates a handler registry {spec: Python class path}: known classes map to
// brokerfs specs; unknown ones give a warning each, in spec order.
func mapHandlers(registry map[string]string) (map[string]string, []string) {
	if len(registry) == 0 {
		return nil, nil
	}
	specs := make([]string, 0, len(registry))
	for s := range registry {
		specs = append(specs, s)
	}
	sort.Strings(specs)
	out := map[string]string{}
	var warns []string
	for _, spec := range specs {
		class := registry[spec]
		if b, ok := HandlerSpec(class); ok {
			out[spec] = b
			continue
		}
		if class == "" {
			warns = append(warns, fmt.Sprintf("handler for spec %s names no class; reads of %s fail unless --handler %s=COMMAND is given", spec, spec, spec))
			continue
		}
		warns = append(warns, fmt.Sprintf("handler %s for spec %s is a Python class brokerfs does not know; reads of %s fail unless --handler %s=COMMAND is given", class, spec, spec, spec))
	}
	return out, warns
}
