/** AdminService token RPCs (admin only, by POLICY): create, list and revoke API tokens. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type ApiToken,
  ApiTokenSchema,
  type CreateTokenRequest,
  type RevokeTokenRequest,
} from "../../gen/crms/v1/admin_pb.js";
import { CrmsError } from "../errors.js";
import type { Logger } from "../log.js";
import type { TokenRecord, Tokens } from "./tokens.js";

function toApi(r: TokenRecord): ApiToken {
  return create(ApiTokenSchema, {
    id: r.id,
    name: r.name,
    role: r.role,
    worker: r.worker ?? "",
    createTime: timestampFromDate(new Date(r.createdAt)),
  });
}

/**
 * `isOpen` says whether the server runs without authentication (loopback, no
 * token yet): there the first token turns authentication on for everyone, so
 * it is only made when asked for deliberately (`bootstrap`).
 */
export function createTokenService(tokens: Tokens, log: Logger, isOpen: () => boolean = () => false) {
  return {
    async createToken(req: CreateTokenRequest) {
      const bootstrap = isOpen();
      if (bootstrap && !req.bootstrap) {
        throw new CrmsError(
          "FAILED_PRECONDITION",
          "this server is open (loopback, no token yet): the first token turns authentication on for every client, " +
            "who then all need a token; to do that on purpose, create it with `crms admin token create --bootstrap` (bootstrap: true)",
        );
      }
      const { secret, record } = await tokens.create({
        name: req.name,
        role: req.role,
        ...(req.worker ? { worker: req.worker } : {}),
      });
      if (bootstrap) {
        log.warn("bootstrap token created: authentication is now on, every client needs a token", {
          token: record.id,
          name: record.name,
          role: record.role,
        });
      } else log.info("token created", { token: record.id, name: record.name, role: record.role });
      return { token: toApi(record), secret };
    },

    async listTokens() {
      return { tokens: (await tokens.list()).map(toApi) };
    },

    async revokeToken(req: RevokeTokenRequest) {
      const record = await tokens.revoke(req.id);
      log.info("token revoked", { token: record.id, name: record.name });
      return { token: toApi(record) };
    },
  };
}
