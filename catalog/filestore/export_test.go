package filestore

// WaitChecked waits for the background check of a listing made from the listing index.
func (c *Catalog) WaitChecked() { c.bg.Wait() }
