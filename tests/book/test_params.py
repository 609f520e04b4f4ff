import pytest

from fairbook.book.params import Constraint, parse_parameters_cell, parse_text
from fairbook.errors import ParameterError

CELL = '''
trials: int = 20                # >= 1 | Monte Carlo trials
prob: float = 0.5               # in [0, 1] | a probability
betas: list[float] = [0, 0.5]   # in [0, 1] | fractions
family: str = "gaussian"        # one of gaussian, laplace | family
flag: bool = False              # | a switch
'''


def test_parse_cell_types_defaults_meanings():
    specs = parse_parameters_cell(CELL, "ch")
    assert list(specs) == ["trials", "prob", "betas", "family", "flag"]
    assert specs["trials"].type == "int" and specs["trials"].default == 20
    assert specs["betas"].default == [0.0, 0.5]
    assert specs["prob"].meaning == "a probability"
    assert specs["flag"].constraint is None
    assert specs["family"].constraint == Constraint("one of", ("gaussian", "laplace"))


@pytest.mark.parametrize("name,text,value", [
    ("trials", "50", 50), ("prob", "0.25", 0.25), ("prob", "1", 1.0), ("betas", "0,0.1,1", [0, 0.1, 1]),
    ("betas", "[0, 1]", [0, 1]), ("family", "laplace", "laplace"), ("flag", "true", True),
])
def test_parse_and_check_valid(name, text, value):
    spec = parse_parameters_cell(CELL, "ch")[name]
    assert spec.check(parse_text(spec, text), "ch", "cli") == value


@pytest.mark.parametrize("name,text,words", [
    ("trials", "-5", ["'trials'", "-5", ">= 1"]),
    ("trials", "2.5", ["'trials'", "2.5", "an integer"]),
    ("trials", "many", ["'trials'", "'many'", "an integer"]),
    ("prob", "1.5", ["'prob'", "1.5", "in [0, 1]"]),
    ("prob", "nan", ["'prob'", "nan", "in [0, 1]"]),
    ("trials", "inf", ["'trials'", "'inf'", "an integer"]),
    ("betas", "0,2", ["'betas'", "2", "every element"]),
    ("family", "cauchy", ["'family'", "cauchy", "one of gaussian, laplace"]),
    ("flag", "perhaps", ["'flag'", "perhaps", "true or false"]),
])
def test_invalid_values_name_parameter_value_and_allowed(name, text, words):
    spec = parse_parameters_cell(CELL, "ch")[name]
    with pytest.raises(ParameterError) as e:
        spec.check(parse_text(spec, text), "ch", "command line")
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("cell,msg", [
    ("x = 3  # | no annotation", "name: type = value"),
    ("x: dict = {}  # | bad type", "is not one of"),
    ("x: int = 3", "needs a '# meaning' comment"),
    ("x: int = -1  # >= 0 | negative default", "got -1"),
    ("x: int = 1  # between 0 and 2 | unknown constraint", "unknown constraint"),
    ('x: str = "a"  # >= 0 | bound on a string', "does not fit type str"),
    ("x: float = 1.0  # one of 1, 2 | choice on a number", "does not fit type float"),
])
def test_malformed_cells_are_errors(cell, msg):
    with pytest.raises(ParameterError) as e:
        parse_parameters_cell(cell, "ch")
    assert msg in str(e.value) and "chapter 'ch'" in str(e.value)


def test_the_default_profile_is_the_notebooks_own_defaults():
    """One rule: a notebook run as it is (JupyterLab, run all) is the published `default` run."""
    import yaml

    from fairbook.book import chapters

    assert not yaml.safe_load((chapters.PROFILES_DIR / "default.yml").read_text()), \
        "default.yml must set nothing: change the notebook's parameters cell instead"
    for name in chapters.available():
        ch = chapters.get(name)
        assert ch.values("default") == {n: s.default for n, s in ch.params.items()}
