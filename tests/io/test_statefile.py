"""The inert unpickler's stand-ins: what they keep of a pickled object of a class we do not build."""

import io
import zipfile

import pytest
import torch

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


class Foreign:  # a class no reader knows: torch's weights-only loader refuses it
    def __init__(self):
        self.epoch = 3


def test_a_foreign_pickle_cut_short_is_one_error_naming_the_file_and_the_fix(tmp_path):
    """The weights-only loader refuses the foreign class; the inert reader then meets the end of a
    pickle cut short: one error naming the file and how to convert it, not an EOFError."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "trainer": Foreign()}, buf)
    whole = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / "cut.pt"
    with zipfile.ZipFile(path, "w") as cut:
        for info in whole.infolist():
            data = whole.read(info)
            cut.writestr(info, data[:-3] if info.filename.endswith("data.pkl") else data)
    with pytest.raises(
        statefile.StateFileError, match=r"cannot read .*cut.pt without running code .*EOFError.*convert"
    ):
        statefile.read_state_dict(path)
