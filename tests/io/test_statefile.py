"""The inert unpickler's stand-ins: what they keep of a pickled object of a class we do not build."""

import pytest

from sashimi.io import statefile


def test_an_opaque_object_keeps_its_arguments_state_and_items_and_names_its_class():
    cls = statefile.opaque_class("lightning.Trainer")
    assert statefile.opaque_class("lightning.Trainer") is cls  # one stand-in per pickled class
    obj = cls.__new__(cls, 1, k=2)  # what pickle's NEWOBJ does
    assert (obj.args, obj.kwargs, obj.state, obj.items) == ((1,), {"k": 2}, None, [])
    obj.__setstate__({"epoch": 3})
    obj["a"] = 1
    obj.append(2)
    obj.extend([3])
    assert obj.state == {"epoch": 3} and obj.items == [("a", 1), 2, 3]
    assert repr(obj) == "Opaque(lightning.Trainer)"


def test_a_file_that_is_no_state_dict_is_one_error_naming_it(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights\n")
    with pytest.raises(statefile.StateFileError, match=r"cannot read .*notes.pt: not a torch state dict, Lightning"):
        statefile.read_state_dict(path)
