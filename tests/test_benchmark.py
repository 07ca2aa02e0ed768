"""Smoke tests of the benchmark measurements at tiny sizes; no timing is asserted."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from medanomaly import benchmark
from medanomaly.benchmark import BenchmarkCase

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_PEAK = (2, 16, 8, 8)
TINY_CASE = BenchmarkCase("skipganomaly_pp", in_channels=1, image_size=16, batch_size=2)


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny models run fastest on one thread, and test machines share their cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_result():
    return benchmark.run_case(TINY_CASE, device="cpu", warmup=0, steps=1, score_repeats=1, peak_shape=TINY_PEAK)


def test_default_cases():
    quick = benchmark.default_cases(quick=True)
    full = benchmark.default_cases()
    assert [case.label for case in quick] == ["skipganomaly_pp 3x32x32 b64"]
    assert "skipganomaly_pp 1x128x128 b16" in [case.label for case in full]
    assert {case.model for case in full} == {"skipganomaly_pp", "skip_ganomaly", "ganomaly"}


def test_conv_peak_fields():
    peak = benchmark.measure_conv_peak("cpu", repeats=1, shape=TINY_PEAK)
    assert peak["gflops_per_s"] > 0
    assert peak["layout"] in ("contiguous", "channels_last")
    assert peak["gflop"] == pytest.approx(2 * 2 * 16 * 8 * 8 * 16 * 9 / 1e9)
    assert peak["precision"] == "float32"


def test_peak_blocks_follow_call_length():
    peak = benchmark.PeakConvolution("cpu", shape=TINY_PEAK, repeats=1)
    assert peak.passes_for(0.0) == 1
    assert peak.passes_for(10 * peak.pass_seconds) == 10


def test_time_against_peak_fields():
    peak = benchmark.PeakConvolution("cpu", shape=TINY_PEAK, repeats=1)
    summary = benchmark.time_against_peak(peak.run, peak, items=2, flops=peak.flops, warmup=0, repeats=2)
    assert len(summary["seconds"]) == 2
    assert len(summary["peak_gflops_per_s_all"]) == 2
    assert summary["peak_fraction"] > 0
    assert summary["peak_fraction_median"] > 0


def test_case_result_fields(tiny_result):
    assert tiny_result["label"] == TINY_CASE.label
    for phase in ("train", "score"):
        assert tiny_result[phase]["images_per_s"] > 0, phase
        assert tiny_result[phase]["gflop_per_image"] > 0, phase
        assert tiny_result[phase]["peak_fraction"] > 0, phase
    assert tiny_result["memory"]["peak_rss_mib"] >= tiny_result["memory"]["rss_at_start_mib"]
    assert tiny_result["channels_last"]


def test_train_step_costs_more_than_scoring(tiny_result):
    # Forward + backward of G and D against one G pass and two D passes.
    assert tiny_result["train"]["gflop_per_image"] > 2 * tiny_result["score"]["gflop_per_image"]


def test_flop_count_leaves_model_unchanged():
    model = benchmark.create_model("skipganomaly_pp", in_channels=1, image_size=16)
    setup = benchmark.make_training_setup(model, torch.device("cpu"))
    before = [param.detach().clone() for param in model.parameters()]
    x = benchmark.make_batch(2, 1, 16, torch.device("cpu"), channels_last=True)
    assert benchmark.count_train_step_flops(setup, x) > 0
    for old, new in zip(before, model.parameters()):
        assert torch.equal(old, new)


def _tensor_layouts(calls):
    return [
        [(tuple(arg.shape), arg.stride()) for arg in args if isinstance(arg, torch.Tensor)]
        for _, args, _ in calls
    ]


def test_recorder_counts_step_convolutions(monkeypatch):
    model = benchmark.create_model("skipganomaly_pp", in_channels=1, image_size=16)
    setup = benchmark.make_training_setup(model, torch.device("cpu"))
    x = benchmark.make_batch(2, 1, 16, torch.device("cpu"), channels_last=True)
    # nn.Conv2d and the ASPP centre-tap branches both call F.conv2d.
    forward_calls = []
    conv2d = torch.nn.functional.conv2d

    def counting_conv2d(*args, **kwargs):
        forward_calls.append(1)
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting_conv2d)
    with benchmark.ConvolutionRecorder() as recorder:
        setup.step(x)
    monkeypatch.undo()
    # Every convolution of G and of the three D passes runs forward once and
    # backward once: D(x) and D(fake.detach()) in the D update, D(fake) in the G update.
    assert recorder.counts() == {"forward": len(forward_calls), "backward": len(forward_calls)}

    # The replay runs the same kernels: the same shapes and strides in the same order.
    with benchmark.ConvolutionRecorder() as replayed:
        recorder.replay()
    assert [func for func, _, _ in replayed.calls] == [func for func, _, _ in recorder.calls]
    assert _tensor_layouts(replayed.calls) == _tensor_layouts(recorder.calls)
    # The stand-ins keep the channels-last layout of the step.
    inputs = [args[0] for func, args, _ in recorder.calls if func is torch.ops.aten.convolution.default]
    assert any(
        tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
        for tensor in inputs
    )


@pytest.mark.parametrize("name", ["ganomaly", "skip_ganomaly"])
def test_recorder_counts_transposed_when_scoring(name):
    # These decoders upsample with transposed convolutions.
    model = benchmark.create_model(name, in_channels=1, image_size=16)
    scorer = benchmark.AnomalyScorer(model, threshold=0.0, channels_last=True)
    x = benchmark.make_batch(2, 1, 16, torch.device("cpu"), channels_last=True)
    scorer(x)
    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    calls = []
    hooks = [
        module.register_forward_hook(lambda *_: calls.append(1))
        for module in scorer.inference_model().modules()
        if isinstance(module, layers)
    ]
    with benchmark.ConvolutionRecorder() as recorder:
        scorer(x)
    for hook in hooks:
        hook.remove()
    assert any(isinstance(module, torch.nn.ConvTranspose2d) for module in model.modules())
    assert recorder.counts() == {"forward": len(calls), "backward": 0}


def test_peak_memory_read_before_replays(monkeypatch):
    # The recorder's stand-in tensors must not count in the reported peak memory.
    events = []

    def fake_peak_rss():
        events.append("rss")
        return float(len(events))

    original_init = benchmark.ConvolutionRecorder.__init__

    def recording_init(self):
        events.append("recorder")
        original_init(self)

    monkeypatch.setattr(benchmark, "peak_rss_mib", fake_peak_rss)
    monkeypatch.setattr(benchmark.ConvolutionRecorder, "__init__", recording_init)
    benchmark.run_case(TINY_CASE, device="cpu", warmup=0, steps=1, score_repeats=1, peak_shape=TINY_PEAK)
    last_rss = max(index for index, event in enumerate(events) if event == "rss")
    assert "recorder" in events
    assert events.index("recorder") > last_rss


def test_case_result_convolutions_alone(tiny_result):
    train = tiny_result["train"]["convolutions_only"]
    assert train["calls"]["forward"] > 0
    assert train["calls"]["backward"] == train["calls"]["forward"]
    assert train["peak_fraction"] > 0
    assert train["share_of_time"] > 0
    score = tiny_result["score"]["convolutions_only"]
    assert score["calls"]["backward"] == 0
    # One generator pass and two discriminator passes.
    assert score["calls"]["forward"] > 0
    assert score["calls"]["forward"] < train["calls"]["forward"]
    assert score["peak_fraction"] > 0


def test_run_case_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        benchmark.run_case(TINY_CASE, steps=0)


def test_report_lists_targets(tiny_result):
    result = {"machine": benchmark.machine_info(threads=1), "cases": [tiny_result], "load_average_end": [0.0] * 3}
    result["targets"] = benchmark.check_targets(result)
    report = benchmark.format_report(result)
    assert TINY_CASE.label in report
    assert "convs alone" in report
    assert "set by --threads" in report
    assert len(result["targets"]) == 2
    assert json.loads(json.dumps(result)) == result


def test_machine_info_fields():
    info = benchmark.machine_info()
    assert info["cpu_cores"] >= 1
    assert info["torch_version"] == torch.__version__
    assert info["torch_threads_default"]


def test_dicom_scoring_runs_cli(tmp_path):
    result = benchmark.measure_dicom_scoring(tmp_path, slices=4, size=64, image_size=16)
    assert result["error"] is None
    assert result["method"].startswith("medanomaly score")
    assert result["ratio"] > 0
    assert result["ratio_in_command"] > 1
    assert (tmp_path / "out" / "scores.csv").is_file()


def test_worker_prints_json():
    arguments = {
        "case": {"model": "ganomaly", "in_channels": 1, "image_size": 16, "batch_size": 2},
        "warmup": 0,
        "steps": 1,
        "score_repeats": 1,
        "threads": 1,
        "peak_shape": list(TINY_PEAK),
    }
    result = benchmark.run_in_subprocess("case", arguments, timeout=300)
    assert result["label"] == "ganomaly 1x16x16 b2"
    assert result["threads"] == 1


def test_pipeline_options():
    spec = importlib.util.spec_from_file_location("pipeline_benchmark", REPO_ROOT / "pipelines" / "benchmark.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    args = pipeline.parse_args(["--quick", "--json", "--threads", "1"])
    assert args.quick and args.json
    assert args.threads == 1
    assert args.steps is None
