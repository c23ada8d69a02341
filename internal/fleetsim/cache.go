package fleetsim

import "container/list"

// blockCache is a replica's prefix cache: an LRU of block ids holding at
// most cap blocks. A prompt's hit is its longest run of leading blocks
// present, as in a paged KV cache with prefix sharing.
type blockCache struct {
	cap   int
	order *list.List // front: most recent
	at    map[uint64]*list.Element
}

func newBlockCache(capBlocks int) *blockCache {
	return &blockCache{cap: capBlocks, order: list.New(), at: map[uint64]*list.Element{}}
}

// prefix is how many leading blocks of ids the cache holds, without
// touching them.
func (c *blockCache) prefix(ids []uint64) int {
	for i, id := range ids {
		if _, ok := c.at[id]; !ok {
			return i
		}
	}
	return len(ids)
}

// use touches ids (they were just computed or reused), evicting the least
// recently used blocks beyond the capacity. The first block is touched
// last so a prompt's head outlives its tail, as engines evict a prefix's
// leaves before its root.
func (c *blockCache) use(ids []uint64) {
	if c.cap <= 0 {
		return
	}
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		if e, ok := c.at[id]; ok {
			c.order.MoveToFront(e)
			continue
		}
		c.at[id] = c.order.PushFront(id)
	}
	for c.order.Len() > c.cap {
		e := c.order.Back()
		delete(c.at, e.Value.(uint64))
		c.order.Remove(e)
	}
}
