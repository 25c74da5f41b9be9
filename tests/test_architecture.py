"""Which part of evad_mm may import which (docs/architecture.md).

Every ``import`` in the package, also inside functions, is resolved (relative
imports too) and checked against the layers: the model code never reaches
up to the APIs, the visualisation or the scripts in tools/.
"""
import ast
import os.path as osp
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = Path(REPO) / 'evad_mm'
# the lower layers and what each may import from evad_mm (itself always);
# the upper ones (apis, visualization, deployment, ...) may import any of
# them, and nothing in evad_mm imports tools/
LOWER = {
    'compat': set(),
    'version': set(),
    'registry': set(),
    'utils': {'compat', 'registry'},
    'models': {'compat', 'registry', 'utils'},
    'datasets': {'compat', 'registry', 'utils'},
    'evaluation': {'compat', 'registry', 'utils'},
    'engine': {'compat', 'registry', 'utils'},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path: Path):
    """(line, module) of every import in ``path``, relative ones resolved
    (``from ..apis import x`` in evad_mm/models/a.py: evad_mm.apis)."""
    package = module_name(path).split('.')
    if path.name != '__init__.py':
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] \
                if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            yield node.lineno, module
            if not node.module:  # from . import x: x may be a module
                for alias in node.names:
                    yield node.lineno, f'{module}.{alias.name}'


def part(module: str):
    """``evad_mm.models.necks.x`` -> ``'models'``; None outside evad_mm."""
    parts = module.split('.')
    if parts[0] != 'evad_mm':
        return None
    return parts[1] if len(parts) > 1 else ''


def sources(folder: Path):
    return sorted(p for p in folder.rglob('*.py'))


def test_import_resolution(tmp_path):
    """The resolver sees relative imports (else the checks below pass
    vacuously)."""
    models = PACKAGE / 'models'
    found = {m for p in sources(models) for _, m in imported_modules(p)}
    assert 'evad_mm.registry' in found
    assert 'evad_mm.models.layers.transformer' in found  # from ..layers...
    head = models / 'roi_heads' / 'context_refinement_head.py'
    assert module_name(head) == 'evad_mm.models.roi_heads.' \
        'context_refinement_head'


def test_models_import_no_apis_visualization_or_tools():
    bad = []
    for path in sources(PACKAGE / 'models'):
        for line, module in imported_modules(path):
            if part(module) in ('apis', 'visualization') or \
                    module.split('.')[0] == 'tools':
                bad.append(f'{osp.relpath(path, REPO)}:{line}: {module}')
    assert not bad, ('evad_mm/models must not import the APIs, the '
                     'visualisation or tools/:\n' + '\n'.join(bad))


@pytest.mark.parametrize('layer', sorted(LOWER))
def test_lower_layers_import_only_below(layer):
    path = PACKAGE / layer
    files = sources(path) if path.is_dir() else [path.with_suffix('.py')]
    assert files
    allowed = LOWER[layer] | {layer}
    bad = [f'{osp.relpath(p, REPO)}:{line}: {module}'
           for p in files for line, module in imported_modules(p)
           if part(module) is not None and part(module) not in allowed]
    assert not bad, (f'evad_mm.{layer} may import only '
                     f'{sorted(LOWER[layer]) or "nothing"} from evad_mm:\n'
                     + '\n'.join(bad))


def test_nothing_in_the_package_imports_tools():
    bad = [f'{osp.relpath(p, REPO)}:{line}: {module}'
           for p in sources(PACKAGE) for line, module in imported_modules(p)
           if module.split('.')[0] == 'tools']
    assert not bad, '\n'.join(bad)
