"""RL controllers: token grammars, the LSTM policy, REINFORCE / PPO updates, warm starts."""
from nascore.controllers.grammar import GrammarError, TokenGrammar
from nascore.controllers.policy import LSTMPolicy, Rollout
from nascore.controllers.updates import CONTROLLER_UPDATES, PPO, Reinforce, warm_start

__all__ = ["CONTROLLER_UPDATES", "GrammarError", "LSTMPolicy", "PPO", "Reinforce", "Rollout",
           "TokenGrammar", "warm_start"]
