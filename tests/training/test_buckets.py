import pytest
from accelerate.data_loader import BatchSamplerShard

from diffusers_videolatent.training.buckets import (
    BucketBatchSampler,
    default_bucket_weights,
    format_buckets,
    parse_buckets,
)


def test_parse_buckets_and_default_budget():
    buckets, weights = parse_buckets("17x64x64, 33x64x64,17x128x128")
    assert buckets == [(17, 64, 64), (33, 64, 64), (17, 128, 128)]
    # equal compute per bucket: weight x frames x height x width is the same for all
    costs = [weight * frames * height * width for weight, (frames, height, width) in zip(weights, buckets)]
    assert costs == pytest.approx([costs[0]] * 3)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] > 0.5  # most steps on the smallest bucket
    assert format_buckets(buckets) == "17x64x64,33x64x64,17x128x128"


def test_parse_buckets_explicit_weights():
    buckets, weights = parse_buckets("17x64x64:3,33x64x64:1")
    assert buckets == [(17, 64, 64), (33, 64, 64)]
    assert weights == pytest.approx([0.75, 0.25])
    # an explicit weight is on the scale of the default (normalised) weights of the others
    _, mixed = parse_buckets("17x64x64,33x64x64:0")
    assert mixed == pytest.approx([1.0, 0.0])
    assert default_bucket_weights([(9, 32, 32), (9, 32, 32)]) == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("text", ["", "17x64", "17x64x64x3", "17x64x64,17x64x64", "0x64x64", "17x64x64:-1", "a"])
def test_parse_buckets_rejects(text):
    with pytest.raises(ValueError, match="--buckets"):
        parse_buckets(text)


def test_sampler_batches_come_from_one_bucket_with_the_budget():
    buckets = [(9, 32, 32), (17, 32, 32), (17, 64, 64)]
    item_buckets = [buckets[index % 3] for index in range(60)]
    sampler = BucketBatchSampler(item_buckets, 4, buckets, weights=[0.6, 0.3, 0.1], num_batches=2000, seed=1)
    counts = [0, 0, 0]
    for batch in sampler:
        assert len(batch) == 4
        assert len({item_buckets[index] for index in batch}) == 1
        counts[buckets.index(item_buckets[batch[0]])] += 1
    assert len(sampler) == 2000
    assert [count / 2000 for count in counts] == pytest.approx([0.6, 0.3, 0.1], abs=0.03)


def test_sampler_order_is_a_function_of_seed_and_epoch():
    buckets = [(9, 32, 32), (17, 32, 32)]
    item_buckets = [buckets[index % 2] for index in range(20)]
    sampler = BucketBatchSampler(item_buckets, 3, buckets, seed=5)
    assert len(sampler) == 6
    epoch_0 = list(sampler)
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    assert epoch_0 != epoch_1
    again = BucketBatchSampler(item_buckets, 3, buckets, seed=5)
    again.set_epoch(1)
    assert list(again) == epoch_1
    again.set_epoch(0)
    assert list(again) == epoch_0
    # every item of a bucket is seen before any repeats
    first_bucket_items = [index for batch in epoch_0 for index in batch if item_buckets[index] == buckets[0]]
    assert len(set(first_bucket_items[:10])) == min(10, len(first_bucket_items))


def test_sampler_rejects_an_empty_bucket():
    with pytest.raises(ValueError, match="no item in the bucket"):
        BucketBatchSampler([(9, 32, 32)] * 4, 2, [(9, 32, 32), (17, 32, 32)])
    with pytest.raises(ValueError, match="`weights`"):
        BucketBatchSampler([(9, 32, 32)] * 4, 2, [(9, 32, 32)], weights=[0.5, 0.5])


@pytest.mark.parametrize("batch_size", [1, 2])
def test_sharded_sampler_gives_the_global_batches_of_one_process(batch_size):
    # accelerate gives process p the batches p, p + 2, ... (split_batches=False): at every step both processes are in
    # one bucket, and together hold the batch one process at twice the batch size draws, in the same order
    buckets = [(9, 32, 32), (17, 32, 32), (9, 64, 64)]
    item_buckets = [buckets[index % 3] for index in range(30)]
    one = BucketBatchSampler(item_buckets, 2 * batch_size, buckets, seed=7)
    two = BucketBatchSampler(item_buckets, batch_size, buckets, seed=7, num_processes=2)
    for epoch in (0, 1):
        one.set_epoch(epoch)
        two.set_epoch(epoch)
        shards = [BatchSamplerShard(two, num_processes=2, process_index=process) for process in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == len(one) == 30 // (2 * batch_size)
        steps = [first + second for first, second in zip(*shards, strict=True)]
        assert steps == list(one)
        assert all(len({item_buckets[index] for index in step}) == 1 for step in steps)
    with pytest.raises(ValueError, match="`num_processes`"):
        BucketBatchSampler(item_buckets, 2, buckets, num_processes=0)
