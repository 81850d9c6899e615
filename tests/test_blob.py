"""Blob triggers and blob bindings on Azurite: the sample app's thumbnail function drains
50 images with no error; the classic (polling) trigger, a blob input binding and an output
binding's path filled from the trigger's {name}."""

from __future__ import annotations

import io
import json

import pytest
from conftest import APPS, session_processes, wait_gone, worker_processes
from test_cli import cli

from throughput_lab import load_app
from throughput_lab.app_loader import AppLoadError
from throughput_lab.blob import BlobLab
from throughput_lab.blob.lab import EVENT_GRID, find_blob_function
from throughput_lab.blob.message import fill, path_values
from throughput_lab.lab import find_app

pytestmark = pytest.mark.timeout(240)
Image = pytest.importorskip("PIL.Image")


def blob_services() -> list:
    return session_processes(
        lambda cmdline: "azurite-blob" in " ".join(cmdline) or "--blobPort" in cmdline,
        zombies=False,
    )


def test_blob_paths_bind_as_the_host_binds_them():
    assert path_values("images/{name}", "images/cat.png") == {"name": "cat.png"}
    assert path_values("images/{stem}.{ext}", "images/a.b.png") == {"stem": "a", "ext": "b.png"}
    assert path_values("images/{name}", "other/cat.png") is None
    assert fill("thumbnails/{name}", {"name": "cat.png"}) == "thumbnails/cat.png"


def test_the_sample_thumbnail_function_stays_deployable_to_flex():
    thumbnail = load_app(find_app())["thumbnail"]
    assert thumbnail.blob_source == EVENT_GRID  # Flex Consumption runs no other
    assert thumbnail.blob_bindings == (("thumbnail", "out", "thumbnails/{name}"),)
    with pytest.raises(AppLoadError, match="not blob-triggered"):
        find_blob_function({"sync_io": load_app(find_app())["sync_io"].describe()}, "sync_io")


def test_fifty_images_drain_through_the_thumbnail_function():
    from azure.storage.blob import ContainerClient

    workers, services = {p.pid for p in worker_processes()}, {p.pid for p in blob_services()}
    with BlobLab(find_app()) as lab:
        result = lab.drain("thumbnail", 50, processes=2)
        thumbnails = ContainerClient.from_connection_string(
            lab.azurite.connection_string, "thumbnails"
        )
        names = sorted(b.name for b in thumbnails.list_blobs())
        one = thumbnails.download_blob(names[0]).readall()
    assert result.summary.ok == 50 and result.summary.errors == 0, result.summary.error_samples
    assert result.written == 50 and len(names) == 50
    assert "in place of Event Grid" in result.line()
    with Image.open(io.BytesIO(one)) as picture:
        assert max(picture.size) == 128 and picture.format == "PNG"
    assert not wait_gone(worker_processes, workers)
    assert not wait_gone(blob_services, services)


def test_the_polling_trigger_reads_an_input_binding_and_writes_its_output():
    from azure.storage.blob import BlobServiceClient

    with BlobLab(APPS / "blob_app") as lab:
        storage = BlobServiceClient.from_connection_string(lab.azurite.connection_string)
        storage.create_container("assets")
        storage.get_blob_client("assets", "mark.txt").upload_blob(b"MARK")
        result = lab.drain("polled", 8)
        size = storage.get_blob_client("sizes", "image-00003.png.txt").download_blob().readall()
    assert result.summary.errors == 0 and result.written == 8 and result.scans >= 1
    assert result.summary.concurrency == 4  # host.json maxDegreeOfParallelism
    assert size == b"MARK uploads/image-00003.png 800x600"
    assert "container scans (polling)" in result.line()


def test_bench_blobs_on_the_command_line():
    done = cli("bench", "--function", "thumbnail", "--blobs", "6", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["ok"], answer["written"], answer["source"]) == (6, 6, EVENT_GRID)
    refused = cli("bench", "--function", "sync_io", "--blobs", "3")
    assert refused.returncode == 2 and "not blob-triggered" in refused.stderr
