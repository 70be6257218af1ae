"""localdev/layer.py: the trim `make build` applies to the built layer."""

from __future__ import annotations

from pathlib import Path

from localdev.layer import installed_distributions, main, trim


def install_fake(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A distribution as pip --target leaves it: its files and a dist-info with a RECORD."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    listed = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{path},,\n" for path in listed))


def test_trim_removes_runtime_provided_distributions_and_unused_files(tmp_path: Path) -> None:
    site = tmp_path / "python"
    install_fake(
        site, "botocore", "1.44.8", {"botocore/__init__.py": "x" * 100, "botocore/data/s.json": "{}"}
    )
    install_fake(site, "python_dateutil", "2.9.0", {"dateutil/__init__.py": "", "dateutil/tz/tz.py": ""})
    install_fake(site, "six", "1.17.0", {"six.py": ""})
    install_fake(
        site,
        "numpy",
        "2.4.6",
        {
            "numpy/__init__.py": "",
            "numpy/__init__.pyi": "stub",
            "numpy/_core/multiarray.py": "",
            "numpy/_core/tests/test_api.py": "test",
            "numpy/_core/include/numpy/ndarrayobject.h": "header",
        },
    )
    install_fake(site, "wrapt", "2.5.2", {"wrapt/__init__.py": "", "wrapt/wrappers.py": ""})
    (site / "abtest").mkdir()
    (site / "abtest" / "__init__.py").write_text("")

    trimmed = trim(site)

    assert trimmed.distributions == ["botocore", "python-dateutil", "six"]
    assert set(installed_distributions(site)) == {"numpy", "wrapt"}
    remaining = {path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()}
    assert {p for p in remaining if "dist-info" not in p} == {
        "numpy/__init__.py",
        "numpy/_core/multiarray.py",
        "wrapt/__init__.py",
        "wrapt/wrappers.py",
        "abtest/__init__.py",
    }
    assert not (site / "botocore").exists()
    assert not (site / "dateutil").exists()
    assert trimmed.bytes_removed > 100
    # Running it again (a cached sam build) finds nothing more to remove.
    assert trim(site).distributions == []


def test_the_command_trims_every_layer_it_is_given(tmp_path: Path) -> None:
    """`make build` trims both built layers (AbTestLayer and NumpyLayer) in one call."""
    shared, numpy_layer = tmp_path / "AbTestLayer" / "python", tmp_path / "NumpyLayer" / "python"
    install_fake(shared, "botocore", "1.44.8", {"botocore/__init__.py": "x"})
    install_fake(shared, "wrapt", "2.5.2", {"wrapt/__init__.py": ""})
    install_fake(numpy_layer, "numpy", "2.4.6", {"numpy/__init__.py": "", "numpy/_core/tests/t.py": "t"})

    assert main(["trim", str(shared), str(numpy_layer)]) == 0

    assert set(installed_distributions(shared)) == {"wrapt"}
    assert set(installed_distributions(numpy_layer)) == {"numpy"}
    assert not (numpy_layer / "numpy" / "_core" / "tests").exists()
    assert (numpy_layer / "numpy" / "__init__.py").is_file()
