// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC20TransferFrom {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title BatchSender: many ERC-20 transfers in one transaction.
/// @notice `batchTransfer` calls `token.transferFrom(msg.sender, to[i], amounts[i])` for every i,
///         so the caller first approves this contract on the token. One transaction, one block:
///         tests use it to put hundreds of `Transfer` logs into a block cheaply.
/// @dev Works with tokens that return `bool` and with those that return nothing (USDT-style).
///      A transfer to a new holder costs about 27k gas, so keep a batch within the block gas
///      limit (anvil's default is 30M: at most ~1,000 new recipients per transaction).
contract BatchSender {
    error LengthMismatch(uint256 recipients, uint256 amounts);
    error NotAContract(address token);
    error TransferFailed(uint256 index);

    function batchTransfer(address token, address[] calldata to, uint256[] calldata amounts)
        external
    {
        if (to.length != amounts.length) revert LengthMismatch(to.length, amounts.length);
        if (token.code.length == 0) revert NotAContract(token);
        for (uint256 i = 0; i < to.length;) {
            (bool ok, bytes memory answer) = token.call(
                abi.encodeCall(IERC20TransferFrom.transferFrom, (msg.sender, to[i], amounts[i]))
            );
            if (!ok || (answer.length != 0 && !abi.decode(answer, (bool)))) {
                revert TransferFailed(i);
            }
            unchecked {
                ++i;
            }
        }
    }
}
