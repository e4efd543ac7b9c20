// Package builtin composes brokerfs's default handler set: one function, Register, names
// every handler it adds, so what a registry holds is read here and nowhere else (no init()
// side effects).
package builtin

import (
	"fmt"

	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/external"
	"github.com/brokerfs/brokerfs/handlers/hdf5"
	"github.com/brokerfs/brokerfs/handlers/npy"
	"github.com/brokerfs/brokerfs/handlers/tiff"
)

// Options configure the default set.
type Options struct {
	// HDF5 configures the HDF5 handlers (AD_HDF5, AD_HDF5_SWMR, TPX_HDF5, AD_EIGER, XSP3).
	HDF5 hdf5.Options
	// External are handlers run as external programs (--handler SPEC=COMMAND). One for a
	// built-in spec replaces the built-in.
	External []External
}

// External is one external handler.
type External struct {
	Spec    string
	Command []string
	Options external.Options // its Spec is set from Spec
}

// Register adds the built-in handlers to r, then the external ones. It fails if r already
// holds one of the built-in specs, or if two external handlers share a spec.
func Register(r *handlers.Registry, o Options) error {
	for _, e := range []struct {
		spec string
		open handlers.Opener
	}{
		{hdf5.SpecAD, hdf5.NewAD(o.HDF5)},
		{hdf5.SpecADSWMR, hdf5.NewADSWMR(o.HDF5)},
		{hdf5.SpecTPX, hdf5.NewTPX(o.HDF5)},
		{hdf5.SpecEiger, hdf5.NewEiger(o.HDF5)},
		{hdf5.SpecXSP3, hdf5.NewXSP3(o.HDF5)},
		{tiff.Spec, tiff.Open},
		{npy.SpecSeq, npy.OpenSeq},
		{npy.SpecFile, npy.OpenFile},
		{npy.SpecFramewise, npy.OpenFramewise},
	} {
		if err := r.Register(e.spec, e.open); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, x := range o.External {
		if x.Spec == "" || len(x.Command) == 0 {
			return fmt.Errorf("external handler %q %q: want a spec and a command", x.Spec, x.Command)
		}
		if seen[x.Spec] {
			return fmt.Errorf("external handler %s: given twice", x.Spec)
		}
		seen[x.Spec] = true
		eo := x.Options
		eo.Spec = x.Spec
		r.Replace(x.Spec, external.New(x.Command, eo))
	}
	return nil
}

// Warm does ahead what the built-in handlers do on their first open and that costs time from
// a cold disk: libhdf5 looks for a bitshuffle filter on its plugin path, which loads every
// plugin there (LZ4, BZ2, ...). Safe to call from any goroutine, any number of times.
func Warm() { hdf5.BitshuffleSource() }
