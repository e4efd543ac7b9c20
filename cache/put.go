package cache

import "errors"

// PutLater stores an entry of no files holding meta under key, in the background, so that the
// caller does not wait for the index (a run's documents, kept so that the next mount opens the
// run without reading its file). A failure (cache full, directory unavailable) is logged at
// debug level: such an entry is an optimisation. Close waits for the puts begun before it.
func (s *Store) PutLater(key string, meta []byte) {
	s.mu.Lock()
	if s.closed || s.noPuts {
		s.mu.Unlock()
		return
	}
	s.puts.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.puts.Done()
		if err := s.put(key, meta); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Debug("cache: store entry", "err", err)
		}
	}()
}

func (s *Store) put(key string, meta []byte) error {
	b, err := s.Build(key)
	if err != nil {
		return err
	}
	defer b.Abort()
	if err := b.Reserve(int64(len(meta))); err != nil {
		return err
	}
	_, err = b.Commit(meta)
	return err
}
