import pytest
import torch

from taulib.activations import cache

SPEC = cache.ActivationSpec("m", "float32", 3, 8, "default", "train", 30, "float16", 10)


def _write_cache(folder, n_shards=3, rows=10, d=4):
    folder.mkdir(parents=True, exist_ok=True)
    shards = [cache.write_shard(folder, i, torch.randn(rows, d).half(), torch.arange(rows)) for i in range(n_shards)]
    cache.write_manifest(folder, SPEC, shards, d, {"tokens_per_second": 1.0})
    return shards


def test_round_trip(tmp_path):
    _write_cache(tmp_path)
    loaded = cache.load_cache(tmp_path, SPEC)
    assert loaded.activations.shape == (30, 4) and loaded.activations.dtype == torch.float16
    assert loaded.token_ids.tolist() == list(range(10)) * 3
    assert cache.is_complete(tmp_path, SPEC)


def test_missing_cache_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(cache.CacheError, match="no complete activation cache here.*01_extract_activations"):
        cache.load_cache(tmp_path / "nothing")


def test_interrupted_extraction_is_never_read_as_complete(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    shard = cache.write_shard(tmp_path, 0, torch.randn(10, 4).half(), torch.arange(10))
    cache.write_progress(tmp_path, SPEC, [shard])
    assert not cache.is_complete(tmp_path, SPEC)
    with pytest.raises(cache.CacheError, match="interrupted"):
        cache.load_cache(tmp_path, SPEC)
    assert cache.read_progress(tmp_path, SPEC) == [shard]  # and it resumes from that shard


def test_truncated_shard_is_refused(tmp_path):
    _write_cache(tmp_path)
    path = tmp_path / cache.shard_name(1)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(cache.CacheError, match="shard_00001.safetensors: truncated"):
        cache.load_cache(tmp_path, SPEC)


def test_altered_shard_fails_its_checksum(tmp_path):
    _write_cache(tmp_path)
    path = tmp_path / cache.shard_name(2)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(cache.CacheError, match="sha256 checksum mismatch"):
        cache.load_cache(tmp_path, SPEC)


def test_nan_activations_are_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    bad = torch.randn(10, 4)
    bad[3, 1] = float("nan")
    # written around write_shard's own check, as a corrupted or foreign cache would be
    from safetensors.torch import save_file

    save_file({"activations": bad.half(), "token_ids": torch.arange(10, dtype=torch.int32)}, str(tmp_path / cache.shard_name(0)))
    record = {
        "file": cache.shard_name(0),
        "n_tokens": 10,
        "bytes": (tmp_path / cache.shard_name(0)).stat().st_size,
        "sha256": cache.sha256_file(tmp_path / cache.shard_name(0)),
    }
    cache.write_manifest(tmp_path, SPEC, [record], 4, {})
    with pytest.raises(cache.CacheError, match="1 activation rows contain NaN or inf"):
        cache.load_cache(tmp_path, SPEC)


def test_cache_of_another_spec_is_refused(tmp_path):
    _write_cache(tmp_path)
    other = cache.ActivationSpec("m", "float32", 4, 8, "default", "train", 30, "float16", 10)
    with pytest.raises(cache.CacheError, match="differs in: layer"):
        cache.load_cache(tmp_path, other)


def test_overflowing_storage_dtype_is_refused_at_write(tmp_path):
    with pytest.raises(cache.CacheError, match="storage dtype may overflow"):
        cache.write_shard(tmp_path, 0, (torch.ones(2, 2) * 1e6).half(), torch.arange(2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_memory_mapped_cache_reads_the_same_rows_as_the_loaded_one(tmp_path, dtype):
    spec = cache.ActivationSpec("m", "float32", 3, 8, "default", "train", 37, str(dtype).removeprefix("torch."), 10)
    sizes = (10, 17, 10)  # shards of unequal length: the row → shard lookup is exercised
    records = [cache.write_shard(tmp_path, i, torch.randn(n, 5).to(dtype), torch.arange(n)) for i, n in enumerate(sizes)]
    cache.write_manifest(tmp_path, spec, records, 5, {})
    loaded, mapped = cache.load_cache(tmp_path, spec), cache.load_cache(tmp_path, spec, mmap=True)
    assert isinstance(mapped.activations, cache.MappedActivations) and mapped.activations.shape == loaded.activations.shape == (37, 5)
    rows = torch.tensor([36, 0, 9, 10, 26, 27, 3, 3, 20])  # across every shard boundary, unsorted, repeated
    assert mapped.activations[rows].dtype == dtype
    assert torch.equal(mapped.activations[rows], loaded.activations[rows])
    assert torch.equal(mapped.activations[5:30], loaded.activations[5:30])
    assert torch.equal(mapped.token_ids, loaded.token_ids)
    with pytest.raises(TypeError, match="use activation_storage 'host' or 'device'"):
        mapped.activations.to("cpu")


def test_memory_mapped_loading_refuses_nan_rows_as_loading_does(tmp_path):
    from safetensors.torch import save_file

    bad = torch.randn(12, 4)
    bad[[2, 7], 0] = float("inf")
    path = tmp_path / cache.shard_name(0)
    save_file({"activations": bad.half(), "token_ids": torch.arange(12, dtype=torch.int32)}, str(path))
    cache.write_manifest(tmp_path, SPEC, [{"file": path.name, "n_tokens": 12, "bytes": path.stat().st_size, "sha256": cache.sha256_file(path)}], 4, {})
    with pytest.raises(cache.CacheError, match="2 activation rows contain NaN or inf"):
        cache.load_cache(tmp_path, SPEC, mmap=True)


def test_an_uncapped_spec_keeps_the_key_and_record_it_had_before_the_document_cap():
    """Caches extracted before `activations.max_document_tokens` existed keep their folders and manifests (the key below
    is the one the code before the cap computed for this spec); a cap is another cache."""
    assert "max_document_tokens" not in SPEC.record() and SPEC.key() == "m_L3_ctx8_default_train_30_cf30d6e5a0"
    capped = cache.ActivationSpec("m", "float32", 3, 8, "default", "train", 30, "float16", 10, max_document_tokens=256)
    assert capped.record()["max_document_tokens"] == 256 and capped.key() != SPEC.key()
