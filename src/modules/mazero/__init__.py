"""MAZero's centralised world model (`model.py`), the flat single-agent MuZero baseline (`flat_model.py`) and the
action spaces their policies and the search tree work in (`action_space.py`)."""
