"""The model manifest and the registry of bundles.

The engine serves a bundle only through its manifest: version, feature names and order with
dtypes, actions, outputs, the training data's fingerprint, metrics, the ONNX file's SHA-256 and
the parity result. The registry is a folder of versions; ``promote`` marks the one served.

    registry/
      CHAMPION               the promoted version's name
      <version>/bundle.onnx
      <version>/manifest.json
      <version>/report.html
      <version>/design.skops   a project bundle's design matrix (its SHA-256 in the manifest)
      <version>/baseline.json  a project bundle's baseline XGBoost model, for reason codes
      <version>/native.json    the native models the bundle's parity was checked against
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from policies.errors import ModelManifestError, first_problem

__all__ = [
    "BASELINE_FILE",
    "DESIGN_FILE",
    "NATIVE_FILE",
    "Feature",
    "Manifest",
    "Parity",
    "ProjectBinding",
    "Registry",
    "fingerprint",
    "sha256_of",
]

DESIGN_FILE = "design.skops"
BASELINE_FILE = "baseline.json"
NATIVE_FILE = "native.json"


class Feature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: str = "float32"


class Parity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int
    max_abs_diff: float
    tolerance: float
    passed: bool


class ProjectBinding(BaseModel):
    """What a project bundle serves: the project, its outcome, and the design matrix file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    outcome: str
    outcome_kind: Literal["binary", "continuous"]
    design_sha256: str
    # The baseline model's XGBoost JSON (model_export.explain) and its Platt slope.
    baseline_sha256: str
    platt_a: float


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    created_at: AwareDatetime
    learner: str
    features: tuple[Feature, ...]
    actions: tuple[str, ...]
    outputs: tuple[str, ...]
    training_data_fingerprint: str
    metrics: dict[str, object]
    onnx_sha256: str
    onnx_opset: int
    parity: Parity
    project: ProjectBinding | None = None  # None: the simulated world's fixed feature vector
    # The native XGBoost models the bundle was checked against (NATIVE_FILE); None in versions
    # exported before it was kept.
    native_sha256: str | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def check_serves(self, features: tuple[str, ...], actions: tuple[str, ...]) -> None:
        """Refuse a bundle whose features or actions differ from what the engine will feed it."""
        if self.feature_names != features:
            missing = sorted(set(features) - set(self.feature_names))
            extra = sorted(set(self.feature_names) - set(features))
            raise ModelManifestError(
                f"model {self.version} does not match the feature service: missing from the "
                f"model {missing}, unknown to the service {extra}, or a different order"
            )
        if self.actions != actions:
            raise ModelManifestError(
                f"model {self.version} scores actions {self.actions}, the catalog has {actions}"
            )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of a training frame's content (values, columns and order)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[Manifest]:
        if not self.root.exists():
            return []
        found = [
            self.manifest(p.name)
            for p in sorted(self.root.iterdir())
            if (p / "manifest.json").exists()
        ]
        return sorted(found, key=lambda m: m.created_at)

    def manifest(self, version: str) -> Manifest:
        path = self.root / version / "manifest.json"
        try:
            return Manifest.model_validate_json(path.read_text())
        except OSError:
            raise ModelManifestError(f"no model version {version!r} in {self.root}") from None
        except ValidationError as exc:
            where, message, _ = first_problem(exc, "manifest")
            raise ModelManifestError(f"{path}: {where}: {message}") from None

    def write(
        self,
        manifest: Manifest,
        bundle: bytes,
        report_html: str | None = None,
        extras: dict[str, str] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> Path:
        """A new version's folder; ``extras`` (text) and ``files`` (bytes) are more files to
        keep next to the bundle."""
        folder = self.root / manifest.version
        if folder.exists():
            raise ModelManifestError(
                f"model version {manifest.version} already exists in {self.root}"
            )
        folder.mkdir(parents=True)
        (folder / "bundle.onnx").write_bytes(bundle)
        (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        if report_html is not None:
            (folder / "report.html").write_text(report_html)
        for name, text in (extras or {}).items():
            (folder / name).write_text(text)
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data)
        return folder

    def folder(self, version: str) -> Path:
        return self.root / version

    def promote(self, version: str) -> Manifest:
        manifest = self.verified(version)
        (self.root / "CHAMPION").write_text(version + "\n")
        return manifest

    def champion(self) -> str | None:
        path = self.root / "CHAMPION"
        return path.read_text().strip() if path.exists() else None

    def chosen(self, version: str | None) -> str:
        """``version``, or the champion when None; one clear error when there is none."""
        chosen = version or self.champion()
        if chosen is None:
            raise ModelManifestError(
                f"no promoted model in {self.root}; run `nba models promote <version>`"
            )
        return chosen

    def verified(self, version: str) -> Manifest:
        """The manifest, after checking that the bundle on disk is the one it describes."""
        manifest = self.manifest(version)
        bundle = self.root / version / "bundle.onnx"
        if not bundle.exists() or sha256_of(bundle) != manifest.onnx_sha256:
            raise ModelManifestError(
                f"model {version}: bundle.onnx does not match the manifest's checksum"
            )
        if not manifest.parity.passed:
            raise ModelManifestError(
                f"model {version} failed its parity check and cannot be served"
            )
        return manifest

    def design(self, manifest: Manifest) -> bytes:
        """A project bundle's design matrix file, after checking it against the manifest."""
        binding = self._binding(manifest)
        return self._checked(manifest.version, DESIGN_FILE, binding.design_sha256)

    def native(self, manifest: Manifest) -> bytes | None:
        """The native models' file (model_export.native.native_models), checked against the
        manifest; None for a version exported without it."""
        if manifest.native_sha256 is None:
            return None
        return self._checked(manifest.version, NATIVE_FILE, manifest.native_sha256)

    def baseline(self, manifest: Manifest) -> bytes:
        """A project bundle's baseline XGBoost model (JSON), after checking its checksum."""
        binding = self._binding(manifest)
        return self._checked(manifest.version, BASELINE_FILE, binding.baseline_sha256)

    @staticmethod
    def _binding(manifest: Manifest) -> ProjectBinding:
        if manifest.project is None:
            raise ModelManifestError(f"model {manifest.version} is not a project's model")
        return manifest.project

    def _checked(self, version: str, name: str, sha256: str) -> bytes:
        data = (self.root / version / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelManifestError(
                f"model {version}: {name} does not match the manifest's checksum"
            )
        return data

    def bundle_path(self, version: str) -> Path:
        return self.root / version / "bundle.onnx"
