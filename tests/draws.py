"""A hook at every draw of a token, on whichever loop samples: the Python loop's `draw`, and the
native sampling loop made to draw one sample per call (NATIVE_CHUNK = 1, so that a call is one draw
of each row); for the tests of Ctrl-C and of what is written while sampling goes on."""

from sashimi.sampling import sample as sample_module


def on_each_draw(monkeypatch, hook) -> None:
    """hook() runs before each draw (each batch's row of draws counts once); what it raises stops
    sampling there, the draws before it done."""
    real_draw, real_choice = sample_module.draw, sample_module.ThreadChoice

    def draw(*args):
        hook()
        return real_draw(*args)

    class HookedChoice(real_choice):
        def __call__(self, *args):
            hook()
            return super().__call__(*args)

    monkeypatch.setattr(sample_module, "draw", draw)
    monkeypatch.setattr(sample_module, "ThreadChoice", HookedChoice)
    monkeypatch.setattr(sample_module, "NATIVE_CHUNK", 1)


def interrupt_at_draw(n: int, monkeypatch, also=lambda: None) -> list:
    """Ctrl-C as the n-th token is drawn (after `also()`); returns the list of draws begun."""
    draws = []

    def hook():
        draws.append(1)
        if len(draws) == n:
            also()
            raise KeyboardInterrupt

    on_each_draw(monkeypatch, hook)
    return draws
