"""One torch thread for the information-toolkit tests: the small models here gain nothing from more,
and on a loaded shared machine two spinning threads were up to 8x slower than one."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
