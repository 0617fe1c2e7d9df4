"""Episode storage with EPyMARL's scheme / groups / preprocess semantics.

A scheme maps field names to {"vshape": int | tuple, "dtype": torch dtype (default float32), "group": "agents"
(optional: adds a leading group dimension), "episode_const": bool (optional: one value per episode)}.
Per-step fields live in `data.transition_data[k]` with shape [B, T, *shape], per-episode fields in
`data.episode_data[k]` with shape [B, *shape]. The reserved field `filled` [B, T, 1] marks valid steps.
`preprocess` = {source_field: (derived_field, [Transform, ...])}; derived fields are recomputed on every update
of their source.
"""
from types import SimpleNamespace

import numpy as np
import torch

RESERVED_FILLED = "filled"


def _normalise_vshape(vshape):
    return (vshape,) if isinstance(vshape, int) else tuple(vshape)


class EpisodeBatch:
    def __init__(self, scheme, groups, batch_size, max_seq_length, data=None, preprocess=None, device="cpu"):
        self.scheme = dict(scheme)
        self.groups = dict(groups)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.preprocess = {} if preprocess is None else preprocess
        self.device = device
        if data is not None:
            self.data = data
        else:
            self.data = SimpleNamespace(transition_data={}, episode_data={})
            self._setup_data(scheme, self.groups, self.preprocess)

    # --- construction ------------------------------------------------------------------------------------------
    def _setup_data(self, scheme, groups, preprocess):
        scheme = dict(scheme)
        for source, (derived, transforms) in preprocess.items():
            if source not in scheme:
                raise KeyError(f"preprocess source field {source!r} is not in the scheme")
            vshape = _normalise_vshape(scheme[source]["vshape"])
            dtype = scheme[source].get("dtype", torch.float32)
            for transform in transforms:
                vshape, dtype = transform.infer_output_info(vshape, dtype)
            derived_info = {"vshape": vshape, "dtype": dtype}
            for key in ("group", "episode_const"):
                if key in scheme[source]:
                    derived_info[key] = scheme[source][key]
            scheme[derived] = derived_info

        if RESERVED_FILLED in scheme:
            raise ValueError(f"'{RESERVED_FILLED}' is a reserved scheme key")
        if RESERVED_FILLED not in self.data.transition_data:
            scheme[RESERVED_FILLED] = {"vshape": (1,), "dtype": torch.long}

        for field, info in scheme.items():
            if field in self.data.transition_data or field in self.data.episode_data:
                raise ValueError(f"scheme field {field!r} already exists in this batch")
            if "vshape" not in info:
                raise ValueError(f"scheme field {field!r} has no 'vshape'")
            shape = _normalise_vshape(info["vshape"])
            group = info.get("group")
            if group is not None:
                if group not in groups:
                    raise KeyError(f"scheme field {field!r} uses unknown group {group!r}")
                shape = (groups[group],) + shape
            dtype = info.get("dtype", torch.float32)
            if info.get("episode_const", False):
                self.data.episode_data[field] = torch.zeros((self.batch_size,) + shape, dtype=dtype, device=self.device)
            else:
                self.data.transition_data[field] = torch.zeros(
                    (self.batch_size, self.max_seq_length) + shape, dtype=dtype, device=self.device
                )
            self.scheme[field] = dict(info)

    def extend(self, scheme, groups=None):
        """Adds new fields (zero-filled) to this batch."""
        if groups is not None:
            self.groups.update(groups)
        self._setup_data(scheme, self.groups, {})

    def to(self, device):
        for store in (self.data.transition_data, self.data.episode_data):
            for k, v in store.items():
                store[k] = v.to(device)
        self.device = device
        return self

    # --- writing -----------------------------------------------------------------------------------------------
    def update(self, data, bs=slice(None), ts=slice(None), mark_filled=True):
        """Writes `data` {field: values} at env indices `bs` and time indices `ts`.

        Values may be tensors, numpy arrays or (nested) lists; they are converted to the field's dtype and must
        match the destination shape up to singleton dimensions.
        """
        bs_index, ts_index = self._parse_slices(bs, ts)
        for field, value in data.items():
            if field in self.data.transition_data:
                store = self.data.transition_data
                index = (bs_index, ts_index)
                if mark_filled:
                    store[RESERVED_FILLED][index] = 1
                    mark_filled = False
            elif field in self.data.episode_data:
                store = self.data.episode_data
                index = (bs_index,)
            else:
                raise KeyError(f"{field!r} is not a field of this batch; fields: {sorted(self.scheme)}")
            dtype = self.scheme[field].get("dtype", torch.float32)
            tensor = self._as_tensor(value, dtype)
            destination = store[field][index]
            self._check_safe_view(field, tensor, destination)
            store[field][index] = tensor.reshape(destination.shape)

            if field in self.preprocess:
                derived, transforms = self.preprocess[field]
                derived_value = store[field][index]
                for transform in transforms:
                    derived_value = transform.transform(derived_value)
                derived_store = self.data.episode_data if derived in self.data.episode_data else store
                derived_store[derived][index] = derived_value.reshape(derived_store[derived][index].shape)

    def _as_tensor(self, value, dtype):
        if isinstance(value, torch.Tensor):
            return value.to(device=self.device, dtype=dtype)
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=self.device)

    @staticmethod
    def _check_safe_view(field, value, destination):
        # a write is safe if both shapes agree once singleton dimensions are dropped (e.g. [B, N] into [B, 1, N, 1])
        if [d for d in value.shape if d != 1] != [d for d in destination.shape if d != 1]:
            raise ValueError(
                f"cannot write {field!r}: values of shape {tuple(value.shape)} do not fit {tuple(destination.shape)}"
            )

    @staticmethod
    def _to_index(item):
        """int -> length-1 slice (keeps the dimension); index sequences -> LongTensor; slices unchanged."""
        if isinstance(item, (int, np.integer)):
            return slice(int(item), int(item) + 1)
        if isinstance(item, slice):
            return item
        if isinstance(item, (list, tuple, np.ndarray, torch.Tensor)):
            return torch.as_tensor(np.asarray(item, dtype=np.int64))
        raise TypeError(f"unsupported index {item!r}")

    def _parse_slices(self, bs, ts):
        ts_index = self._to_index(ts)
        if not isinstance(ts_index, slice):
            raise TypeError("time indices must be an int or a contiguous slice")
        return self._to_index(bs), ts_index

    # --- reading -----------------------------------------------------------------------------------------------
    def __getitem__(self, item):
        if isinstance(item, str):
            if item in self.data.episode_data:
                return self.data.episode_data[item]
            if item in self.data.transition_data:
                return self.data.transition_data[item]
            raise KeyError(f"{item!r} is not a field of this batch; fields: {sorted(self.scheme)}")
        if isinstance(item, tuple) and item and all(isinstance(k, str) for k in item):
            data = SimpleNamespace(transition_data={}, episode_data={})
            for key in item:
                if key in self.data.transition_data:
                    data.transition_data[key] = self.data.transition_data[key]
                elif key in self.data.episode_data:
                    data.episode_data[key] = self.data.episode_data[key]
                else:
                    raise KeyError(f"{key!r} is not a field of this batch")
            data.transition_data[RESERVED_FILLED] = self.data.transition_data[RESERVED_FILLED]
            scheme = {k: self.scheme[k] for k in item}
            groups = {info["group"]: self.groups[info["group"]] for info in scheme.values() if "group" in info}
            return EpisodeBatch(scheme, groups, self.batch_size, self.max_seq_length, data=data, device=self.device)

        bs, ts = item if isinstance(item, tuple) else (item, slice(None))
        bs_index, ts_index = self._parse_slices(bs, ts)
        data = SimpleNamespace(transition_data={}, episode_data={})
        for k, v in self.data.transition_data.items():
            data.transition_data[k] = v[bs_index][:, ts_index]
        for k, v in self.data.episode_data.items():
            data.episode_data[k] = v[bs_index]
        new_batch_size = data.transition_data[RESERVED_FILLED].shape[0]
        new_max_t = data.transition_data[RESERVED_FILLED].shape[1]
        return EpisodeBatch(
            self.scheme, self.groups, new_batch_size, new_max_t, data=data, preprocess=self.preprocess,
            device=self.device,
        )

    def max_t_filled(self):
        """Length of the longest episode in the batch (number of filled steps)."""
        return int(self.data.transition_data[RESERVED_FILLED].sum(1).max().item())

    def __repr__(self):
        return (
            f"EpisodeBatch(batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
            f"fields={sorted(self.scheme)}, groups={self.groups})"
        )


class ReplayBuffer(EpisodeBatch):
    """Ring buffer of whole episodes; `sample` draws episodes uniformly without replacement."""

    def __init__(self, scheme, groups, buffer_size, max_seq_length, preprocess=None, device="cpu"):
        super().__init__(scheme, groups, buffer_size, max_seq_length, preprocess=preprocess, device=device)
        self.buffer_size = buffer_size
        self.buffer_index = 0
        self.episodes_in_buffer = 0

    def insert_episode_batch(self, ep_batch):
        if ep_batch.batch_size > self.buffer_size:
            raise ValueError(f"cannot insert {ep_batch.batch_size} episodes into a buffer of {self.buffer_size}")
        room = self.buffer_size - self.buffer_index
        if ep_batch.batch_size > room:
            self.insert_episode_batch(ep_batch[0:room])
            self.insert_episode_batch(ep_batch[room:ep_batch.batch_size])
            return
        rows = slice(self.buffer_index, self.buffer_index + ep_batch.batch_size)
        steps = slice(0, ep_batch.max_seq_length)
        self.update(ep_batch.data.transition_data, rows, steps, mark_filled=False)
        self.update(ep_batch.data.episode_data, rows)
        self.buffer_index = (self.buffer_index + ep_batch.batch_size) % self.buffer_size
        self.episodes_in_buffer = min(self.buffer_size, self.episodes_in_buffer + ep_batch.batch_size)

    def can_sample(self, batch_size):
        return self.episodes_in_buffer >= batch_size

    def sample(self, batch_size):
        if not self.can_sample(batch_size):
            raise ValueError(f"asked for {batch_size} episodes, buffer holds {self.episodes_in_buffer}")
        if self.episodes_in_buffer == batch_size:
            return self[:batch_size]
        episode_ids = np.random.choice(self.episodes_in_buffer, batch_size, replace=False)
        return self[episode_ids]

    def __repr__(self):
        return (
            f"ReplayBuffer({self.episodes_in_buffer}/{self.buffer_size} episodes, "
            f"fields={sorted(self.scheme)}, groups={self.groups})"
        )
